// The OCI runtime adapter over a runc-compatible CLI (runc or crun) via the exec seam, each with a private
// state root so Warren's containers never mix with others; plus the state-file checks runc and crun share.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { type Logger, InvalidError, silentLogger } from '@warren/base';
import { ExecError, exec, spawnLogged } from './exec.js';
import type { OciConfig } from './oci-spec.js';
import {
  type ContainerExecOptions,
  type ContainerState,
  type ContainerStatus,
  ContainerNotFoundError,
  type OciRuntime,
  type PreparedExec,
  stopContainer,
} from './runtime.js';

/** Default private state root (`runc --root`): Warren's containers live apart from Docker's or others'. */
export const DEFAULT_STATE_ROOT = '/run/warren/runc';

const LOG_TAIL_BYTES = 2048;

function isNotExist(error: unknown): boolean {
  return error instanceof ExecError && /does not exist|not found|No such file/i.test(error.stderrTail);
}

/** Options of {@link CliOciRuntime}. */
export interface CliOciRuntimeOptions {
  /** Runtime binary: `runc` (default) or `crun`. */
  binary?: string;
  /** `--root` state directory; default {@link DEFAULT_STATE_ROOT} (`/run/warren/crun` for crun). */
  stateRoot?: string;
  logger?: Logger;
}

/**
 * An {@link OciRuntime} driving a runc-compatible CLI (runc 1.1 / crun ≥ 1.8 share these commands and
 * flags: `create --bundle --pid-file`, `start`, `run -d`, `exec --process`, `kill [--all]`,
 * `delete [--force]`, `state`, `list --format json`, `pause`, `resume`; see runc(8)).
 */
export class CliOciRuntime implements OciRuntime {
  readonly name: string;
  readonly stateRoot: string;
  protected readonly logger: Logger;

  constructor(options: CliOciRuntimeOptions = {}) {
    this.name = options.binary ?? 'runc';
    this.stateRoot = options.stateRoot ?? (this.name === 'runc' ? DEFAULT_STATE_ROOT : `/run/warren/${this.name}`);
    this.logger = (options.logger ?? silentLogger).child({ component: 'oci-runtime', runtime: this.name });
  }

  /** The command line of one runtime call; subclasses may wrap it (see {@link CrunRuntime}). */
  protected argv(...args: string[]): string[] {
    return [this.name, '--root', this.stateRoot, ...args];
  }

  /**
   * Runs a runtime command whose container inherits its stdio (create/run): stdout/stderr go to
   * `<bundle>/warren-init.log` instead of pipes, because a detached container keeps inherited pipes open.
   */
  private async runDetached(args: string[], bundleDir: string): Promise<void> {
    await mkdir(this.stateRoot, { recursive: true, mode: 0o700 });
    const logPath = join(bundleDir, 'warren-init.log');
    const log = await open(logPath, 'a');
    const argv = this.argv(...args);
    try {
      const child = spawnLogged(argv, { cwd: bundleDir, stdio: ['ignore', log.fd, log.fd], logger: this.logger });
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (exitCode) => resolve(exitCode));
      });
      if (code !== 0) {
        const text = await readFile(logPath, 'utf8').catch(() => '');
        throw new ExecError(argv, code, text.slice(-LOG_TAIL_BYTES), '');
      }
    } finally {
      await log.close();
    }
  }

  /** @throws {ExecError} when runc fails (stderr tail from `<bundle>/warren-init.log`). */
  async create(bundleDir: string, id: string): Promise<number> {
    await this.runDetached(['create', '--bundle', bundleDir, id], bundleDir);
    return this.requirePid(id);
  }

  /** @throws {ExecError} when the container is not in the `created` state. */
  async start(id: string): Promise<void> {
    await exec(this.argv('start', id), { logger: this.logger });
  }

  /** @throws {ExecError} when runc fails (stderr tail from `<bundle>/warren-init.log`). */
  async run(bundleDir: string, id: string): Promise<number> {
    await this.runDetached(['run', '--detach', '--bundle', bundleDir, id], bundleDir);
    return this.requirePid(id);
  }

  private async requirePid(id: string): Promise<number> {
    const state = await this.state(id);
    if (!state) throw new ContainerNotFoundError(id);
    return state.pid;
  }

  /**
   * Builds the exec'd process from the container's own config.json `process` (capabilities, rlimits,
   * env, user) with the given overrides. Like Docker, a non-root user gets no effective, permitted or
   * ambient capabilities (only the bounding set, so setuid programs such as sudo still work).
   */
  private async execProcess(id: string, options: ContainerExecOptions): Promise<OciConfig['process']> {
    if (options.args.length === 0) throw new InvalidError('exec needs a command', [{ field: 'args', message: 'must not be empty' }]);
    const state = await this.state(id);
    if (!state) throw new ContainerNotFoundError(id);
    const config = JSON.parse(await readFile(join(state.bundle, 'config.json'), 'utf8')) as OciConfig;
    const base = config.process;
    const env = new Map<string, string>();
    for (const entry of [...base.env, ...(options.env ?? [])]) {
      const separator = entry.indexOf('=');
      if (separator <= 0) throw new InvalidError('invalid environment entry', [{ field: 'env', message: `"${entry}" is not KEY=value` }]);
      env.set(entry.slice(0, separator), entry);
    }
    const uid = options.uid ?? base.user.uid;
    const gid = options.gid ?? base.user.gid;
    const user: OciConfig['process']['user'] = { uid, gid };
    const additionalGids = options.additionalGids ?? (options.uid === undefined ? base.user.additionalGids : undefined);
    if (additionalGids && additionalGids.length > 0) user.additionalGids = additionalGids;
    const bounding = base.capabilities.bounding;
    return {
      ...base,
      terminal: options.tty ?? false,
      user,
      args: [...options.args],
      env: [...env.values()],
      cwd: options.cwd ?? base.cwd,
      capabilities: uid === 0 ? base.capabilities : { bounding: [...bounding], effective: [], permitted: [], inheritable: [], ambient: [] },
      // Containers made before this field existed have no oomScoreAdj in their config.json (0010).
      oomScoreAdj: 0,
    };
  }

  /**
   * Starts `options.args` in the running container through `runc exec --process <file>` (see
   * {@link execCommand}); the file is removed when runc exits. (`/dev/fd/N` cannot carry it: Node's extra
   * stdio "pipes" are sockets, which open(2) on /dev/fd refuses with ENXIO.)
   * @returns the runc child: `stdout`/`stderr` are separate streams, `stdin` is writable, and its exit
   *   code is the process's exit code (runc passes it through; 255 when runc itself fails).
   * @throws {InvalidError} for `tty: true` (runc needs a terminal on its stdin; use {@link execCommand}
   *   under node-pty) or an empty `args`.
   * @throws {ContainerNotFoundError} when the container does not exist.
   */
  async exec(id: string, options: ContainerExecOptions): Promise<ChildProcess> {
    if (options.tty) {
      throw new InvalidError('exec with a terminal must run under a pty; use execCommand', [
        { field: 'tty', message: 'not supported by exec' },
      ]);
    }
    const prepared = await this.execCommand(id, options);
    const child = spawnLogged(prepared.argv, { stdio: ['pipe', 'pipe', 'pipe'], logger: this.logger });
    const dispose = (): void => {
      prepared.dispose().catch((error: unknown) => this.logger.warn({ error: String(error) }, 'removing exec process file failed'));
    };
    child.once('exit', dispose);
    child.once('error', dispose);
    return child;
  }

  /**
   * Writes the process description to `<stateRoot>-exec/<uuid>.json` (mode 0600) and returns the argv
   * `runc --root … exec --process <file> <id>`. With `tty: true` runc needs a terminal on its stdin, so
   * spawn the argv under a pty (node-pty); runc then relays between that pty and the container's.
   * @throws {ContainerNotFoundError} when the container does not exist.
   */
  async execCommand(id: string, options: ContainerExecOptions): Promise<PreparedExec> {
    const process = await this.execProcess(id, options);
    const dir = `${this.stateRoot}-exec`;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, `${randomUUID()}.json`);
    await writeFile(file, JSON.stringify(process), { mode: 0o600 });
    return {
      argv: this.argv('exec', '--process', file, ...this.subCgroupArgs(options.subCgroup), id),
      dispose: () => rm(file, { force: true }),
    };
  }

  /** `--cgroup` of `exec` for {@link ContainerExecOptions.subCgroup} (runc-exec(8); crun has no `<controller>:` form). */
  private subCgroupArgs(subCgroup: ContainerExecOptions['subCgroup']): string[] {
    if (!subCgroup) return [];
    if (this.name === 'runc') return ['--cgroup', subCgroup.controller ? `${subCgroup.controller}:${subCgroup.path}` : subCgroup.path];
    return subCgroup.controller ? [] : [`--cgroup=${subCgroup.path}`];
  }

  /**
   * @param signal a signal name (`SIGTERM`, `TERM`) or number, per runc-kill(8).
   * @throws {ContainerNotFoundError} when the container does not exist.
   * @throws {ExecError} for other failures (e.g. the container is not running).
   */
  async kill(id: string, signal: string, options: { all?: boolean } = {}): Promise<void> {
    try {
      await exec(this.argv('kill', ...(options.all ? ['--all'] : []), id, signal), { logger: this.logger });
    } catch (error) {
      if (isNotExist(error)) throw new ContainerNotFoundError(id, { cause: error });
      throw error;
    }
  }

  /** Idempotent: deleting a missing container succeeds. @throws {ExecError} e.g. when running without `force`. */
  async delete(id: string, options: { force?: boolean } = {}): Promise<void> {
    try {
      await exec(this.argv('delete', ...(options.force ? ['--force'] : []), id), { logger: this.logger });
    } catch (error) {
      if (isNotExist(error)) return;
      throw error;
    }
  }

  /** @returns the container's state (`runc state` JSON), or `undefined` when it does not exist. */
  async state(id: string): Promise<ContainerState | undefined> {
    try {
      const result = await exec(this.argv('state', id), { logger: this.logger });
      const parsed = JSON.parse(result.stdout) as { id: string; status: ContainerStatus; pid: number; bundle: string };
      return { id: parsed.id, status: parsed.status, pid: parsed.pid, bundle: parsed.bundle };
    } catch (error) {
      if (isNotExist(error)) return undefined;
      throw error;
    }
  }

  /** @returns container ids under the state root (empty when the root does not exist yet). */
  async list(): Promise<string[]> {
    if (!existsSync(this.stateRoot)) return [];
    const result = await exec(this.argv('list', '--format', 'json'), { logger: this.logger });
    const parsed = JSON.parse(result.stdout.trim() || 'null') as Array<{ id: string }> | null;
    return (parsed ?? []).map((entry) => entry.id);
  }

  /** Freezes every process of the container (cgroup freezer). @throws {ExecError} unless running. */
  async pause(id: string): Promise<void> {
    await exec(this.argv('pause', id), { logger: this.logger });
  }

  /** Thaws a paused container. @throws {ExecError} unless paused. */
  async resume(id: string): Promise<void> {
    await exec(this.argv('resume', id), { logger: this.logger });
  }

  /** SIGTERM, up to `graceSeconds` of waiting, SIGKILL, delete: see {@link stopContainer}. */
  async stop(id: string, graceSeconds: number, options: { pollMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    await stopContainer(this, id, graceSeconds, options);
  }
}

/** Whether the container's cgroup is frozen: v1 `freezer.state` FROZEN, or v2 `cgroup.freeze` 1; a missing cgroup is not. */
export async function isFrozen(cgroupPaths: Record<string, string>): Promise<boolean> {
  const freezer = cgroupPaths['freezer'];
  if (freezer) return (await readFile(join(freezer, 'freezer.state'), 'utf8').catch(() => '')).trim() === 'FROZEN';
  const unified = cgroupPaths[''];
  if (unified) return (await readFile(join(unified, 'cgroup.freeze'), 'utf8').catch(() => '')).trim() === '1';
  return false;
}

/** Whether `pid` is still the process that started at `startTime` (clock ticks since boot) and is not a zombie. */
export async function isLiveProcess(pid: number, startTime: number): Promise<boolean> {
  if (pid <= 0) return false;
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  // Fields after "(comm)": state is field 3, starttime field 22 (proc(5)); comm may contain spaces.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  return state !== 'Z' && state !== 'X' && Number(fields[19]) === startTime;
}
