// The OCI runtime seam: the OciRuntime interface the runner drives (container state, exec options),
// ContainerNotFoundError, and stopContainer. The runc/crun implementations are cli-runtime.ts,
// runc-runtime.ts and crun-runtime.ts; runtime-selection.ts picks one.
import type { ChildProcess } from 'node:child_process';
import { WarrenError } from '@warren/base';

/** Container status as reported by `runc state` (OCI runtime spec runtime.md "State"). */
export type ContainerStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

/** What {@link OciRuntime.state} returns: `pid` is the init process's host pid (0 once stopped). */
export interface ContainerState {
  id: string;
  status: ContainerStatus;
  pid: number;
  /** Absolute bundle directory the container was created from. */
  bundle: string;
}

/** Options of {@link OciRuntime.exec}: the process to start inside a running container. */
export interface ContainerExecOptions {
  args: string[];
  /** `KEY=value` entries, added to (and overriding) the container's config.json `process.env`. */
  env?: string[];
  /** Absolute path inside the container; default the config's `process.cwd`. */
  cwd?: string;
  /** Default the config's user. */
  uid?: number;
  gid?: number;
  additionalGids?: number[];
  /** Allocate a terminal. Not supported by {@link OciRuntime.exec}: use {@link OciRuntime.execCommand} under a pty. */
  tty?: boolean;
  /**
   * An existing sub-cgroup of the container's cgroup to start the process in (the interactive group of
   * docs/design/0015): `path` relative to the container's cgroup, `controller` when it exists in that v1 hierarchy
   * only. runc: `exec --cgroup [<controller>:]<path>`; crun's `--cgroup` has no controller form, so crun starts
   * the process in the container's own cgroup when `controller` is set (and in `path` otherwise).
   */
  subCgroup?: { path: string; controller?: string };
}

/** A prepared `runc exec` command line for a caller that spawns it itself (e.g. under node-pty). */
export interface PreparedExec {
  argv: string[];
  /** Removes the process.json file; call after the process has exited. Safe to repeat. */
  dispose(): Promise<void>;
}

/** A container runtime Warren drives. Ids should start with `warren-` so leaks can be found. */
export interface OciRuntime {
  /** Binary name (`runc` or `crun`). */
  readonly name: string;
  /** Creates the container (init waits for `start`). @returns the init process's host pid. */
  create(bundleDir: string, id: string): Promise<number>;
  /** Starts the user process of a created container. */
  start(id: string): Promise<void>;
  /** Creates and starts the container detached. @returns the init process's host pid. */
  run(bundleDir: string, id: string): Promise<number>;
  /** Starts a process inside the running container; stdout/stderr are separate pipes; exit code passed through. */
  exec(id: string, options: ContainerExecOptions): Promise<ChildProcess>;
  /** Writes a process.json and returns the argv to run it (for terminals spawned under a pty). */
  execCommand(id: string, options: ContainerExecOptions): Promise<PreparedExec>;
  /** Sends `signal` (e.g. `SIGTERM`) to init, or to every process of the container with `all`. */
  kill(id: string, signal: string, options?: { all?: boolean }): Promise<void>;
  /** Deletes the container; a missing container is fine. `force` kills a running one first. */
  delete(id: string, options?: { force?: boolean }): Promise<void>;
  /** @returns the container's state, or `undefined` when it does not exist. */
  state(id: string): Promise<ContainerState | undefined>;
  /** @returns the ids of all containers under this runtime's state root. */
  list(): Promise<string[]>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
}

/** A container the operation needs does not exist (HTTP 404 semantics). */
export class ContainerNotFoundError extends WarrenError {
  constructor(
    readonly containerId: string,
    options?: { cause?: unknown },
  ) {
    super('ContainerNotFound', 404, `container "${containerId}" does not exist`, options);
  }
}

/**
 * Stops a container gracefully and deletes it: SIGTERM to all its processes (`kill --all`), wait up to
 * `graceSeconds` for it to stop, then SIGKILL to all, wait, and `delete --force`. A paused container is
 * resumed first (frozen processes cannot act on signals). A missing container is fine (idempotent).
 * @param graceSeconds seconds to wait after SIGTERM (0 = kill at once).
 * @param options.pollMs state polling interval, default 100 ms.
 * @throws {ExecError} when the runtime fails other than for a missing or already stopped container.
 */
export async function stopContainer(
  runtime: OciRuntime,
  id: string,
  graceSeconds: number,
  options: { pollMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const pollMs = options.pollMs ?? 100;
  const waitStopped = async (timeoutMs: number): Promise<boolean> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await runtime.state(id);
      if (!state || state.status === 'stopped') return true;
      if (Date.now() >= deadline) return false;
      options.signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  };
  const signalAll = async (signal: string): Promise<void> => {
    try {
      await runtime.kill(id, signal, { all: true });
    } catch (error) {
      // Racing with the container's own exit is normal: it may be gone or stopped by now.
      const state = await runtime.state(id);
      if (state && state.status !== 'stopped' && state.status !== 'created') throw error;
    }
  };

  const state = await runtime.state(id);
  if (!state) return;
  if (state.status === 'paused') await runtime.resume(id);
  if (state.status === 'running' || state.status === 'paused') {
    await signalAll('SIGTERM');
    if (!(await waitStopped(graceSeconds * 1000))) {
      await signalAll('SIGKILL');
      await waitStopped(10_000);
    }
  }
  await runtime.delete(id, { force: true });
}
