// crun as Warren's OCI runtime: the CLI adapter run through a private-mount-namespace wrapper on hybrid
// cgroup hosts, a state read straight from crun's status file, a self-test, and cgroup layout probes.
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { CliOciRuntime, type CliOciRuntimeOptions, isFrozen, isLiveProcess } from './cli-runtime.js';
import { exec } from './exec.js';
import type { ContainerState } from './runtime.js';

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
