// The OCI runtime adapter: runs environment containers with runc or crun (through a private-mount-namespace
// wrapper on hybrid cgroup hosts) via the exec seam, each with a private state root so Warren's containers
// never mix with others.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { type Logger, InvalidError, WarrenError, silentLogger } from '@warren/base';
import { ExecError, exec, spawnLogged } from './exec.js';
import type { OciConfig } from './oci-spec.js';

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
      argv: this.argv('exec', '--process', file, id),
      dispose: () => rm(file, { force: true }),
    };
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

/** The fields of runc's `<root>/<id>/state.json` that {@link RuncRuntime.state} reads. */
interface RuncStateFile {
  id?: string;
  init_process_pid?: number;
  init_process_start?: number;
  cgroup_paths?: Record<string, string>;
  config?: { labels?: string[] };
}

/** runc 1.1 (works on cgroup v1, hybrid and v2 hosts). */
export class RuncRuntime extends CliOciRuntime {
  constructor(options: Omit<CliOciRuntimeOptions, 'binary'> = {}) {
    super({ ...options, binary: 'runc' });
  }

  /**
   * Reads the state the way `runc state` derives it, without starting the runc binary (~30 ms of a Go
   * process per call, several calls per reconcile): runc 1.1 libcontainer `refreshState`/`runType`:
   * paused when the freezer says FROZEN (v1 `freezer.state`, v2 `cgroup.freeze`); stopped when the init pid
   * is gone, a zombie, or a different process (start time, proc(5) stat field 22); created while
   * `exec.fifo` exists; otherwise running. `pid` is 0 once stopped and the bundle comes from the `bundle=`
   * label, as in runc's `state` command. runc writes state.json with a rename, so a read never sees half a
   * file. Anything unexpected falls back to `runc state`.
   */
  override async state(id: string): Promise<ContainerState | undefined> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(id)) return super.state(id);
    const dir = join(this.stateRoot, id);
    let file: RuncStateFile;
    try {
      file = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as RuncStateFile;
    } catch (error) {
      // No state file: the container does not exist (runc says the same), unless it is mid-create.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) return undefined;
      return super.state(id);
    }
    const pid = file.init_process_pid;
    const bundle = file.config?.labels?.find((label) => label.startsWith('bundle='))?.slice('bundle='.length);
    if (typeof pid !== 'number' || typeof file.init_process_start !== 'number' || bundle === undefined) return super.state(id);
    const base = { id: file.id ?? id, bundle };
    if (await isFrozen(file.cgroup_paths ?? {})) return { ...base, status: 'paused', pid };
    if (!(await isLiveProcess(pid, file.init_process_start))) return { ...base, status: 'stopped', pid: 0 };
    const created = await stat(join(dir, 'exec.fifo')).then(
      () => true,
      () => false,
    );
    return { ...base, status: created ? 'created' : 'running', pid };
  }
}

/** Whether the container's cgroup is frozen: v1 `freezer.state` FROZEN, or v2 `cgroup.freeze` 1; a missing cgroup is not. */
async function isFrozen(cgroupPaths: Record<string, string>): Promise<boolean> {
  const freezer = cgroupPaths['freezer'];
  if (freezer) return (await readFile(join(freezer, 'freezer.state'), 'utf8').catch(() => '')).trim() === 'FROZEN';
  const unified = cgroupPaths[''];
  if (unified) return (await readFile(join(unified, 'cgroup.freeze'), 'utf8').catch(() => '')).trim() === '1';
  return false;
}

/** Whether `pid` is still the process that started at `startTime` (clock ticks since boot) and is not a zombie. */
async function isLiveProcess(pid: number, startTime: number): Promise<boolean> {
  if (pid <= 0) return false;
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  // Fields after "(comm)": state is field 3, starttime field 22 (proc(5)); comm may contain spaces.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  return state !== 'Z' && state !== 'X' && Number(fields[19]) === startTime;
}

/** Default private state root of {@link CrunRuntime}. */
export const DEFAULT_CRUN_STATE_ROOT = '/run/warren/crun';

/**
 * The shell run by `unshare` in a private mount namespace before crun on hybrid hosts: it removes the
 * cgroup2 mount `$1` (only in that namespace) and replaces itself with crun (`$2…`), so crun's stdio,
 * exit code and signals are crun's own.
 */
const HYBRID_WRAPPER_SCRIPT = 'umount "$1" 2>/dev/null; shift; exec "$@"';

/** Options of {@link CrunRuntime}. */
export interface CrunRuntimeOptions extends Omit<CliOciRuntimeOptions, 'binary'> {
  /**
   * The cgroup2 mount to hide from crun in a private mount namespace, on a "hybrid" host (cgroup v1
   * hierarchies plus a cgroup2 mount that owns a controller, which crun 1.8 refuses: "cgroups in hybrid
   * mode not supported"). Default: {@link hybridUnifiedMount} of the host; `null` runs crun directly.
   */
  hybridUnifiedMount?: string | null;
}

/** The fields of crun's `<root>/<id>/status` that {@link CrunRuntime.state} reads (crun 1.8 `libcrun_write_container_status`). */
interface CrunStatusFile {
  pid?: number;
  'process-start-time'?: number;
  'cgroup-path'?: string;
  bundle?: string;
}

/**
 * crun: the same CLI as runc, 2-4x faster per run/exec on minimal containers (host-feasibility §2d), 10-20 ms
 * less per call on Warren's environment containers (bench/env-start). On a pure
 * cgroup v2 (or pure v1) host it runs directly. On a hybrid host every call (create, start, run, exec,
 * kill, pause, resume, state, list, delete) runs as `unshare --mount --propagation private sh -c
 * 'umount <unified>; exec crun …'`: crun then sees a pure v1 layout and manages the v1 hierarchies with
 * its cgroupfs manager; nothing changes outside that short-lived namespace (host-feasibility §2a). The
 * container's own mount namespace is created from it, so the container does not see the cgroup2 mount.
 */
export class CrunRuntime extends CliOciRuntime {
  /** The cgroup2 mount hidden from crun, or `null` when crun runs directly. */
  readonly hybridUnifiedMount: string | null;

  constructor(options: CrunRuntimeOptions = {}) {
    const { hybridUnifiedMount: unified, ...rest } = options;
    super({ stateRoot: DEFAULT_CRUN_STATE_ROOT, ...rest, binary: 'crun' });
    this.hybridUnifiedMount = unified === undefined ? hybridUnifiedMount() : unified;
  }

  protected override argv(...args: string[]): string[] {
    const direct = ['crun', '--root', this.stateRoot, '--cgroup-manager=cgroupfs', ...args];
    if (this.hybridUnifiedMount === null) return direct;
    return [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      HYBRID_WRAPPER_SCRIPT,
      'warren-crun',
      this.hybridUnifiedMount,
      ...direct,
    ];
  }

  /**
   * Reads the state the way `crun state` derives it (crun 1.8 `libcrun_get_container_state_string`),
   * without starting crun (and its wrapper): stopped when the init pid is gone, a zombie or a different
   * process (start time); paused when the freezer says so (v1 `freezer/<cgroup-path>/freezer.state`,
   * v2 `<cgroup-path>/cgroup.freeze`); created while `exec.fifo` exists; otherwise running. `pid` is 0
   * once stopped. crun writes `status` with a rename. Anything unexpected falls back to `crun state`.
   */
  override async state(id: string): Promise<ContainerState | undefined> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(id)) return super.state(id);
    const dir = join(this.stateRoot, id);
    let file: CrunStatusFile;
    try {
      file = JSON.parse(await readFile(join(dir, 'status'), 'utf8')) as CrunStatusFile;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) return undefined;
      return super.state(id);
    }
    const { pid, bundle } = file;
    const startTime = file['process-start-time'];
    const cgroupPath = file['cgroup-path'];
    if (typeof pid !== 'number' || typeof startTime !== 'number' || typeof bundle !== 'string' || typeof cgroupPath !== 'string')
      return super.state(id);
    const base = { id, bundle };
    if (!(await isLiveProcess(pid, startTime))) return { ...base, status: 'stopped', pid: 0 };
    const cgroupPaths: Record<string, string> =
      cgroupPath === ''
        ? {}
        : isPureCgroupV2()
          ? { '': join('/sys/fs/cgroup', cgroupPath) }
          : { freezer: join('/sys/fs/cgroup/freezer', cgroupPath) };
    if (await isFrozen(cgroupPaths)) return { ...base, status: 'paused', pid };
    const created = await stat(join(dir, 'exec.fifo')).then(
      () => true,
      () => false,
    );
    return { ...base, status: created ? 'created' : 'running', pid };
  }

  /**
   * Proves that crun works on this host the way Warren calls it: `crun run` (foreground, through the
   * hybrid wrapper if any) of a throwaway container whose read-only root holds the host's `/usr` (and
   * `/bin`, `/sbin`, `/lib*`, as symlinks where the host has them, else read-only binds) running
   * `true` in new mount/pid/ipc/uts/network namespaces and a cgroup of its own (which is what crun
   * refuses on a hybrid host without the wrapper). Takes ~40 ms.
   * @throws {ExecError} when crun fails (or is missing), {@link WarrenError} when `true` exits non-zero.
   */
  async selfTest(options: { timeoutMs?: number } = {}): Promise<void> {
    const id = `warren-selftest-${process.pid}-${randomUUID().slice(0, 8)}`;
    const dir = await mkdtemp(join(tmpdir(), 'warren-crun-selftest-'));
    try {
      const rootfs = join(dir, 'rootfs');
      await mkdir(join(rootfs, 'dev'), { recursive: true });
      const mounts: Array<{ destination: string; type: string; source: string; options: string[] }> = [];
      for (const name of ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64']) {
        const host = `/${name}`;
        const info = await lstat(host).catch(() => undefined);
        if (!info) continue;
        if (info.isSymbolicLink()) {
          await symlink(await readlink(host), join(rootfs, name));
        } else if (info.isDirectory()) {
          await mkdir(join(rootfs, name));
          mounts.push({ destination: host, type: 'bind', source: host, options: ['rbind', 'ro', 'nosuid', 'nodev'] });
        }
      }
      const config = {
        ociVersion: '1.0.2',
        process: { args: ['true'], cwd: '/', user: { uid: 0, gid: 0 }, env: ['PATH=/usr/bin:/bin:/usr/sbin:/sbin'], noNewPrivileges: true },
        root: { path: rootfs, readonly: true },
        mounts,
        linux: {
          namespaces: [{ type: 'mount' }, { type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }],
          cgroupsPath: `/${id}`,
        },
      };
      await writeFile(join(dir, 'config.json'), JSON.stringify(config));
      await mkdir(this.stateRoot, { recursive: true, mode: 0o700 });
      await exec(this.argv('run', '--bundle', dir, id), { cwd: dir, timeoutMs: options.timeoutMs ?? 10_000, logger: this.logger });
    } finally {
      await this.delete(id, { force: true }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/**
 * The cgroup2 mount that makes this host "hybrid" for crun: `<root>/unified` when `<root>` itself is not
 * cgroup2 and `<root>/unified` is a cgroup2 mount (it has `cgroup.controllers`); otherwise `null`.
 */
export function hybridUnifiedMount(cgroupRoot = '/sys/fs/cgroup'): string | null {
  const unified = join(cgroupRoot, 'unified');
  return !isPureCgroupV2(cgroupRoot) && existsSync(join(unified, 'cgroup.controllers')) ? unified : null;
}

/**
 * Whether the host has a pure cgroup v2 hierarchy: `cgroup.controllers` at the mount root
 * (cgroups(7), "cgroups version 2"). On v1 and hybrid hosts that file is absent at /sys/fs/cgroup.
 */
export function isPureCgroupV2(cgroupRoot = '/sys/fs/cgroup'): boolean {
  return existsSync(join(cgroupRoot, 'cgroup.controllers'));
}

/**
 * An {@link OciRuntime} over several runtimes with separate state roots: new containers (`create`,
 * `run`) go to the first one; every call naming an existing container goes to the runtime whose state
 * root holds it (`<stateRoot>/<id>`), so containers created by another runtime before a runner restart
 * (e.g. runc before crun was selected) keep being driven by that runtime. `list` is the union.
 */
export class RoutedOciRuntime implements OciRuntime {
  readonly name: string;

  /** @param runtimes the runtime for new containers first, then the others to adopt containers from. */
  constructor(readonly runtimes: readonly [CliOciRuntime, ...CliOciRuntime[]]) {
    this.name = runtimes[0].name;
  }

  /** The runtime whose state root holds `id`; the primary when none does. */
  runtimeOf(id: string): CliOciRuntime {
    const safe = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(id);
    return (safe && this.runtimes.find((runtime) => existsSync(join(runtime.stateRoot, id)))) || this.runtimes[0];
  }

  create(bundleDir: string, id: string): Promise<number> {
    return this.runtimeOf(id).create(bundleDir, id);
  }
  start(id: string): Promise<void> {
    return this.runtimeOf(id).start(id);
  }
  run(bundleDir: string, id: string): Promise<number> {
    return this.runtimeOf(id).run(bundleDir, id);
  }
  exec(id: string, options: ContainerExecOptions): Promise<ChildProcess> {
    return this.runtimeOf(id).exec(id, options);
  }
  execCommand(id: string, options: ContainerExecOptions): Promise<PreparedExec> {
    return this.runtimeOf(id).execCommand(id, options);
  }
  kill(id: string, signal: string, options?: { all?: boolean }): Promise<void> {
    return this.runtimeOf(id).kill(id, signal, options);
  }
  delete(id: string, options?: { force?: boolean }): Promise<void> {
    return this.runtimeOf(id).delete(id, options);
  }
  state(id: string): Promise<ContainerState | undefined> {
    return this.runtimeOf(id).state(id);
  }
  async list(): Promise<string[]> {
    const lists = await Promise.all(this.runtimes.map((runtime) => runtime.list()));
    return [...new Set(lists.flat())];
  }
  pause(id: string): Promise<void> {
    return this.runtimeOf(id).pause(id);
  }
  resume(id: string): Promise<void> {
    return this.runtimeOf(id).resume(id);
  }
}

/** Which OCI runtime to use: `auto` = crun when its self-test passes on this host, else runc. */
export type OciRuntimeChoice = 'auto' | 'runc' | 'crun';

/** Options of {@link selectOciRuntime}. */
export interface SelectOciRuntimeOptions {
  /** Default `auto`. */
  prefer?: OciRuntimeChoice;
  /** State root of runc (default {@link DEFAULT_STATE_ROOT}). */
  runcStateRoot?: string;
  /** State root of crun (default {@link DEFAULT_CRUN_STATE_ROOT}). */
  crunStateRoot?: string;
  /** Overrides {@link CrunRuntimeOptions.hybridUnifiedMount} (tests). */
  hybridUnifiedMount?: string | null;
  logger?: Logger;
}

/**
 * Picks the runtime for new containers and logs the choice: `runc` or `crun` as configured, or with
 * `auto` crun when {@link CrunRuntime.selfTest} passes (on hybrid hosts through its wrapper), runc on
 * any failure. The result is a {@link RoutedOciRuntime} that also drives containers found under the
 * other runtime's state root (created before a restart with another choice).
 * @returns the routed runtime; its `name` is the runtime used for new containers.
 */
export async function selectOciRuntime(options: SelectOciRuntimeOptions = {}): Promise<RoutedOciRuntime> {
  const logger = options.logger ?? silentLogger;
  const prefer = options.prefer ?? 'auto';
  const runc = new RuncRuntime({ stateRoot: options.runcStateRoot, logger });
  const crun = new CrunRuntime({
    stateRoot: options.crunStateRoot,
    logger,
    ...(options.hybridUnifiedMount !== undefined ? { hybridUnifiedMount: options.hybridUnifiedMount } : {}),
  });
  let useCrun = prefer === 'crun';
  let reason = 'configured';
  if (prefer === 'auto') {
    const started = performance.now();
    try {
      await crun.selfTest();
      useCrun = true;
      reason = `crun self-test passed in ${Math.round(performance.now() - started)} ms`;
    } catch (error) {
      reason = `crun self-test failed: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  const routed = useCrun ? new RoutedOciRuntime([crun, runc]) : new RoutedOciRuntime([runc, crun]);
  logger.info(
    { runtime: routed.name, prefer, reason, crunHybridWrapper: useCrun ? crun.hybridUnifiedMount !== null : undefined },
    `OCI runtime for new containers: ${routed.name}`,
  );
  return routed;
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
