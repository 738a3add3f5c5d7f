// The interface between the EnvironmentReconciler and the host: every step is idempotent and every
// observation is derived from what exists on the host, never from the runner's memory.
import type { Environment, EnvironmentStats, Progress } from '@warren/api';
import { type Logger, type Reason, WarrenError } from '@warren/base';
import type { ExecSession } from '../linux/index.js';

export type { ExecSession };

/** State of an environment's container as the OCI runtime reports it (runc state(8) `status`). */
export type ContainerState = 'absent' | 'created' | 'running' | 'paused' | 'stopped';

/** The devcontainer as resolved for one environment (config merged with image metadata), persisted on the host. */
export interface ResolvedEnvironment {
  /** Repository-relative path of the devcontainer.json, absent when the default image was used. */
  configPath?: string;
  /** Image reference as written (or the default image). */
  image: string;
  /** Manifest digest of the pulled image (`sha256:...`). */
  imageDigest?: string;
  remoteUser: string;
  containerUser: string;
  /** Absolute path inside the container. */
  workspaceFolder: string;
  /** Ports from `forwardPorts` with their `portsAttributes` label. */
  ports: Array<{ port: number; label?: string }>;
  /** Properties the config asks for that Warren cannot honour (shown as `DevcontainerSupported=False`). */
  unsupported: Array<{ property: string; message: string; source: string }>;
}

/** What the backend found on the host for one environment. */
export interface ObservedEnvironment {
  /** Any trace exists: directory, slot claim, mounts, container, network, cgroup. */
  exists: boolean;
  /** The repository is completely cloned into the workspace. */
  contentReady: boolean;
  /** The checked-out commit, when known. */
  commit?: string;
  /** Set once the config is resolved and its image pulled. */
  resolved?: ResolvedEnvironment;
  container: {
    state: ContainerState;
    /**
     * Identifies one start of the container (e.g. runc's `created` time plus init pid), so that
     * postStartCommand runs exactly once per start even across runner restarts.
     */
    startId?: string;
    /** When the current container was started (RFC 3339). */
    startedTime?: string;
  };
  /** The environment's disk (quota) usage, when it has a disk (docs/design/0011-disk-quota.md). */
  disk?: { usedBytes: number; limitBytes: number };
  /**
   * OOM kills in the running container's memory cgroup since it started (docs/design/0010-requests-and-limits.md
   * "Memory and OOM"); absent when the container is not running or the host has no such counter.
   */
  memory?: {
    /** Processes the kernel's OOM killer killed in the environment (cgroup `oom_kill`). */
    oomKills: number;
    /** The environment's memory limit (bytes), for the message. */
    limitBytes?: number;
    /** The last one killed, when the kernel log still names it (host pid and command name). */
    lastOomKill?: { pid: number; process: string };
  };
  lifecycle: {
    /** onCreate/updateContent/postCreate have run (successfully or not) for this environment. */
    createDone: boolean;
    /** postStartCommand has run for this `startId`. */
    postStartDoneFor?: string;
    /** The last lifecycle failure, e.g. `postCreateCommand exited with code 1`, if any. */
    failure?: string;
  };
}

/** Context handed to each step. */
export interface StepContext {
  signal: AbortSignal;
  logger: Logger;
  /** Reports progress of a slow step (bytes of a pull, the lifecycle command running); cheap to call often. */
  onProgress(progress: Progress): void;
}

/** Outcome of lifecycle commands. A failure does not stop the environment (as in the reference CLI). */
export interface LifecycleOutcome {
  succeeded: boolean;
  /** Which command failed and how, e.g. `postCreateCommand exited with code 2`. */
  message?: string;
}

/** Parameters of one exec in an environment (the access API's ExecStart, resolved). */
export interface ExecRequest {
  argv: string[];
  tty: boolean;
  cols?: number;
  rows?: number;
  /** Extra `NAME=value` entries, applied after image Env, containerEnv and remoteEnv. */
  env?: string[];
  /** Working directory inside the container; default the workspace folder. */
  cwd?: string;
  /** User name or uid inside the container; default remoteUser. */
  user?: string;
}

/**
 * The host side of environments. Every method is idempotent: calling it again after a crash or in the
 * middle of a half-done step completes the step (level-triggered; controller-runtime's contract).
 * Methods throw {@link TerminalEnvironmentError} for problems a retry cannot fix and anything else
 * for transient problems (retried with backoff).
 */
export interface EnvironmentBackend {
  /** Derives the environment's state from the host (mounts, runtime state, directories). */
  observe(environmentId: string): Promise<ObservedEnvironment>;
  /**
   * Optional: makes the host objects of the environment that depend neither on its content nor on its image
   * (for the Linux backend: slot, user + network namespaces, network), so that this work runs while the
   * repository is cloned. {@link start} still makes whatever is missing, so calling this is never required.
   */
  prepareHost?(environment: Environment, context: StepContext): Promise<void>;
  /** Clones the repository into the workspace (atomic: half clones are never `contentReady`). */
  prepareContent(environment: Environment, context: StepContext): Promise<{ commit?: string }>;
  /** Locates and parses devcontainer.json, pulls the image, merges its metadata; persists the result. */
  resolve(environment: Environment, context: StepContext): Promise<ResolvedEnvironment>;
  /** Mounts the rootfs, sets up network and cgroup, starts the container (no-op when running). */
  start(environment: Environment, context: StepContext): Promise<void>;
  /**
   * Runs lifecycle commands: `create` = onCreate, updateContent, postCreate (once per environment);
   * `start` = postStart (once per container start). Marks them done on the host either way.
   */
  runLifecycle(environment: Environment, stage: 'create' | 'start', context: StepContext): Promise<LifecycleOutcome>;
  /** SIGTERM, wait up to `graceSeconds`, SIGKILL; deletes the container, keeps disk state. */
  stop(environmentId: string, graceSeconds: number, context: StepContext): Promise<void>;
  /** Removes every trace (processes, mounts, network, cgroup, slot, directories). */
  remove(environmentId: string, context: StepContext): Promise<void>;
  /**
   * Removes warren-prefixed host objects whose environment is not in `knownIds`.
   * @returns the environment ids (or object names, when no id is known) removed.
   */
  cleanupOrphans(knownIds: ReadonlySet<string>, context: StepContext): Promise<string[]>;
  /** Lists the environment ids that have state on this host. */
  listEnvironments(): Promise<string[]>;
  /** Starts a process in a running environment. @throws {WarrenError} `EnvironmentNotRunning` (409). */
  exec(environmentId: string, request: ExecRequest, logger: Logger): Promise<ExecSession>;
  /** Absolute path of the environment's lifecycle log (may not exist yet). */
  lifecycleLogPath(environmentId: string): string;
  /**
   * Where the running environment is reachable from the host (port proxy, port detection).
   * @returns undefined when its container is not running. Optional: backends without a network omit it.
   */
  network?(environmentId: string): Promise<EnvironmentNetwork | undefined>;
  /**
   * Reads the environment's usage now (cgroup counters and limits, disk), for the runner's `/metrics` and the
   * access API's stats endpoint (`warren env top`). Cheap enough to call at every scrape: no directory walks.
   * @returns undefined when the environment has no container on this host (stopped, unknown). Optional:
   *   backends without cgroups omit it.
   */
  stats?(environmentId: string): Promise<EnvironmentStats | undefined>;
}

/** The host's way into a running environment. */
export interface EnvironmentNetwork {
  /** The environment's address as the host reaches it (its veth address, e.g. `10.88.0.6`). */
  address: string;
  /** A process inside the environment's network namespace (the container's init), for /proc/<pid>/net. */
  pid: number;
}

/**
 * A problem no retry can fix (bad config, clone failure, missing image); never retryable. The reconciler sets
 * phase `Failed` and condition `conditionType=False` with `reason` and `message`, and does not retry until
 * `metadata.generation` changes (STYLE.md "Errors"). `reason` is a registered error reason (usually the one of
 * the error in `cause`), so condition reasons that come from errors are typed by the same registry.
 */
export class TerminalEnvironmentError extends WarrenError {
  constructor(
    readonly conditionType: string,
    reason: Reason,
    message: string,
    options?: { cause?: unknown; code?: number },
  ) {
    super(reason, options?.code ?? 422, message, { cause: options?.cause, retryable: false });
  }
}

/** The environment has no running container (exec, logs of a stopped environment). HTTP 409. */
export class EnvironmentNotRunningError extends WarrenError {
  constructor(environmentId: string) {
    super('EnvironmentNotRunning', 409, `environment ${environmentId} is not running on this runner`);
  }
}
