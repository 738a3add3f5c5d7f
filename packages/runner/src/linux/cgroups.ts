// Per-environment cgroups (cgroupfs driver; there is no systemd here): creation, limits, stats and
// removal under one `warren` parent, on cgroup v1 (incl. the "hybrid" layout) and cgroup v2 hosts.
import { access, mkdir, readFile, readdir, realpath, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError, type Logger, type Reason, WarrenError, errorMessage, silentLogger } from '@warren/base';

/** cgroup v1 (separate hierarchies per controller) or v2 (one unified hierarchy). */
export type CgroupVersion = 'v1' | 'v2';

/** Where the kernel's cgroup filesystems are mounted on systemd-style and most other hosts. */
export const CGROUP_ROOT = '/sys/fs/cgroup';
/** Parent of every Warren cgroup: groups live at `/warren/<name>` in each hierarchy. */
export const CGROUP_PARENT = 'warren';
/**
 * CFS period in microseconds. Quota = millicores * 100 so that 1000 millicores = one CPU
 * (Documentation/scheduler/sched-bwc.rst; the same rule Kubernetes and runc use).
 */
export const CPU_PERIOD_MICROSECONDS = 100_000;
/** Lowest CPU limit: the kernel rejects a quota below 1 ms (sched-bwc.rst), i.e. 10 millicores. */
export const MIN_CPU_MILLICORES = 10;
/** v1 controllers a Warren group is created in (Documentation/admin-guide/cgroup-v1/*.rst). */
export const V1_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids', 'freezer', 'devices', 'blkio', 'cpuset'] as const;
/** v2 controllers enabled in `cgroup.subtree_control` of the parents (Documentation/admin-guide/cgroup-v2.rst). */
export const V2_CONTROLLERS = ['cpu', 'memory', 'pids'] as const;

/** A cgroup filesystem operation failed. HTTP 500; the reconciler retries. */
export class CgroupError extends WarrenError {
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown; reason?: Reason; code?: number },
  ) {
    super(options?.reason ?? 'CgroupFailed', options?.code ?? 500, message, { cause: options?.cause });
  }
}

/** A cgroup still has processes (rmdir(2) returned EBUSY); the caller must stop them first. HTTP 409. */
export class CgroupBusyError extends CgroupError {
  constructor(path: string, options?: { cause?: unknown }) {
    super(`cgroup ${path} still has processes`, path, { ...options, reason: 'CgroupBusy', code: 409 });
  }
}

/**
 * Resource limits of one group; an absent field means "unlimited".
 * - `cpuMillicores`: CPU time, 1000 = one CPU (CFS bandwidth), at least 10.
 * - `memoryBytes`: memory (RAM + page cache) limit in bytes; the kernel rounds it down to whole pages.
 * - `swapBytes`: swap allowed on top of `memoryBytes`; only with `memoryBytes`; absent = no swap.
 * - `pids`: maximum number of tasks (processes + threads).
 */
export interface CgroupLimits {
  cpuMillicores?: number;
  memoryBytes?: number;
  swapBytes?: number;
  pids?: number;
}

/** Usage read from a group; a field is absent when the host does not expose it. */
export interface CgroupStats {
  /** Total CPU time consumed, nanoseconds (v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000). */
  cpuUsageNanoseconds?: number;
  /** CFS periods in which the group was throttled (cpu.stat nr_throttled). */
  cpuThrottledPeriods?: number;
  /** Time spent throttled, nanoseconds (v1 cpu.stat throttled_time; v2 throttled_usec * 1000). */
  cpuThrottledNanoseconds?: number;
  /** Current memory usage, bytes (v1 memory.usage_in_bytes; v2 memory.current). */
  memoryUsageBytes?: number;
  /** Highest memory usage seen, bytes (v1 memory.max_usage_in_bytes; v2 memory.peak). */
  memoryPeakBytes?: number;
  /** Processes killed by the OOM killer in this group (v1 memory.oom_control / v2 memory.events `oom_kill`). */
  oomKills?: number;
  /** Current number of tasks (pids.current). */
  pids?: number;
}

/** The subset of OCI runtime-spec `linux.resources` (config-linux.md) that carries {@link CgroupLimits}. */
export interface OciLinuxResources {
  cpu?: { quota: number; period: number };
  /** `swap` is memory + swap, as in the spec ("limit of memory+Swap usage"). */
  memory?: { limit: number; swap: number };
  pids?: { limit: number };
}

/**
 * Checks limit values: non-negative safe integers, cpu at least {@link MIN_CPU_MILLICORES}, pids at
 * least 1, and `swapBytes` only together with `memoryBytes`.
 * @throws {InvalidError} naming each bad field.
 */
export function validateLimits(limits: CgroupLimits): void {
  const causes: { field: string; message: string }[] = [];
  const check = (field: keyof CgroupLimits, min: number): void => {
    const value = limits[field];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
      causes.push({ field, message: `must be an integer >= ${min}` });
    }
  };
  check('cpuMillicores', MIN_CPU_MILLICORES);
  check('memoryBytes', 1);
  check('swapBytes', 0);
  check('pids', 1);
  if (limits.swapBytes !== undefined && limits.memoryBytes === undefined) {
    causes.push({ field: 'swapBytes', message: 'needs memoryBytes (swap is limited as memory + swap)' });
  }
  if (causes.length > 0) throw new InvalidError('invalid cgroup limits', causes);
}

/**
 * The same limits as OCI `linux.resources`, for when the runtime (runc) should apply them instead of
 * {@link CgroupManager}: cpu quota/period in microseconds, memory limit and memory+swap in bytes, pids.
 * @throws {InvalidError} see {@link validateLimits}.
 */
export function ociLinuxResources(limits: CgroupLimits): OciLinuxResources {
  validateLimits(limits);
  const resources: OciLinuxResources = {};
  if (limits.cpuMillicores !== undefined) {
    resources.cpu = { quota: cpuQuotaMicroseconds(limits.cpuMillicores), period: CPU_PERIOD_MICROSECONDS };
  }
  if (limits.memoryBytes !== undefined) {
    resources.memory = { limit: limits.memoryBytes, swap: limits.memoryBytes + (limits.swapBytes ?? 0) };
  }
  if (limits.pids !== undefined) resources.pids = { limit: limits.pids };
  return resources;
}

/** CFS quota in microseconds per {@link CPU_PERIOD_MICROSECONDS} for `millicores`. */
export function cpuQuotaMicroseconds(millicores: number): number {
  return Math.round((millicores * CPU_PERIOD_MICROSECONDS) / 1000);
}

/**
 * The OCI `linux.cgroupsPath` for a group: `/<parent>/<name>`. With runc's cgroupfs driver an absolute
 * path is taken relative to each hierarchy's root (runtime-spec config-linux.md "Cgroups path"), so the
 * runtime joins exactly the directories {@link CgroupManager} creates.
 * @throws {InvalidError} for a name that is not a single path component.
 */
export function cgroupsPath(name: string, parent: string = CGROUP_PARENT): string {
  assertName(name);
  return `/${parent}/${name}`;
}

function assertName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) {
    throw new InvalidError(`invalid cgroup name "${name}"`, [
      { field: 'name', message: 'letters, digits, ".", "_", "-"; at most 128 characters' },
    ]);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function errnoCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

function keyedValues(text: string | undefined): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^-?\d+$/.test(value)) values.set(key, Number(value));
  }
  return values;
}

function singleValue(text: string | undefined): number | undefined {
  const trimmed = text?.trim();
  return trimmed !== undefined && /^\d+$/.test(trimmed) ? Number(trimmed) : undefined;
}

/** The kernel prints "no limit" on v1 memory files as PAGE_COUNTER_MAX pages (~2^63); anything >= 2^62 is unlimited. */
function isUnlimited(value: number | undefined): boolean {
  return value === undefined || value < 0 || value >= 2 ** 62;
}

/**
 * Detects the cgroup version of a host.
 * A pure v2 host has `cgroup.controllers` at the root. Anything else with v1 hierarchies is `v1`, which
 * includes the "hybrid" layout (v1 hierarchies plus a cgroup2 mount at `<root>/unified`, here holding only
 * hugetlb): Warren then manages the v1 hierarchies (cgroups(7) "CGROUPS VERSION 1 AND VERSION 2").
 * @throws {CgroupError} when `root` holds neither.
 */
export async function detectCgroupVersion(root: string = CGROUP_ROOT): Promise<CgroupVersion> {
  if (await exists(join(root, 'cgroup.controllers'))) return 'v2';
  for (const controller of V1_CONTROLLERS) {
    if (await exists(join(root, controller, 'cgroup.procs'))) return 'v1';
  }
  throw new CgroupError(`no cgroup v1 hierarchy or cgroup v2 root found under ${root}`, root);
}

/** Options for {@link CgroupManager}. */
export interface CgroupManagerOptions {
  version: CgroupVersion;
  /** Where the cgroup filesystems are mounted; default `/sys/fs/cgroup`. Tests pass a temp dir. */
  root?: string;
  /** Parent group of all managed groups; default `warren`. */
  parent?: string;
  /**
   * Whether swap can be limited. Default: v1 when `<root>/memory/memory.memsw.limit_in_bytes` exists
   * (kernel built with swap accounting, not disabled by `swapaccount=0`); v2 when the new group has
   * `memory.swap.max`. When false, `swapBytes` is ignored (logged) and swap is not limited.
   */
  swapAccounting?: boolean;
  logger?: Logger;
}

/**
 * Creates, limits, inspects and removes Warren cgroups by writing cgroupfs files directly (no systemd).
 *
 * v1 (Documentation/admin-guide/cgroup-v1/): a group is a directory `/<parent>/<name>` in each of the
 * cpu, cpuacct, memory, pids, freezer, devices, blkio and cpuset hierarchies that the host mounts
 * (co-mounted ones such as `cpu,cpuacct` are handled once). Files: `cpu.cfs_period_us` = 100000,
 * `cpu.cfs_quota_us` = millicores * 100 or -1 (sched-bwc.rst); `memory.limit_in_bytes`,
 * `memory.memsw.limit_in_bytes` = memory + swap, written in the order that keeps memsw >= memory
 * (memory.rst §2.4, §5); `pids.max` (pids.rst); `cpuset.cpus`/`cpuset.mems` copied from the parent, since
 * a new cpuset is empty and refuses tasks (cpusets.rst §1.9).
 *
 * v2 (Documentation/admin-guide/cgroup-v2.rst): `+cpu +memory +pids` are enabled in
 * `cgroup.subtree_control` of the root and of `/<parent>` ("Enabling and Disabling"; a child's
 * `cgroup.controllers` is its parent's `subtree_control`). Files: `cpu.max` = "<quota|max> 100000",
 * `memory.max`, `memory.swap.max` = swap (v2 limits swap alone, not memory + swap), `pids.max`.
 *
 * Nothing here kills processes: {@link remove} fails with {@link CgroupBusyError} while tasks remain.
 */
export class CgroupManager {
  readonly version: CgroupVersion;
  readonly root: string;
  readonly parent: string;
  private readonly swapAccounting: boolean | undefined;
  private readonly logger: Logger;

  constructor(options: CgroupManagerOptions) {
    this.version = options.version;
    this.root = options.root ?? CGROUP_ROOT;
    this.parent = options.parent ?? CGROUP_PARENT;
    assertName(this.parent);
    this.swapAccounting = options.swapAccounting;
    this.logger = (options.logger ?? silentLogger).child({ component: 'cgroups' });
  }

  /**
   * Builds a manager for the host's cgroup version ({@link detectCgroupVersion}).
   * @throws {CgroupError} when no cgroup filesystem is mounted at `root`.
   */
  static async detect(options: Omit<CgroupManagerOptions, 'version'> = {}): Promise<CgroupManager> {
    return new CgroupManager({ ...options, version: await detectCgroupVersion(options.root) });
  }

  /** The OCI `linux.cgroupsPath` to give runc for group `name` ({@link cgroupsPath}). */
  cgroupsPath(name: string): string {
    return cgroupsPath(name, this.parent);
  }

  /**
   * Directories of group `name` that limits are written to: one per v1 controller hierarchy present
   * (deduplicated by real path), or the single v2 directory. They need not exist yet.
   * @throws {InvalidError} for a bad name.
   */
  async directories(name: string): Promise<string[]> {
    assertName(name);
    return (await this.controllerRoots()).map((hierarchy) => join(hierarchy, this.parent, name));
  }

  /**
   * Creates group `name` (idempotent) and applies `limits` as {@link update} does.
   * @throws {InvalidError} for a bad name or limits; {@link CgroupError} when the filesystem refuses.
   */
  async create(name: string, limits: CgroupLimits = {}): Promise<void> {
    assertName(name);
    validateLimits(limits);
    try {
      if (this.version === 'v2') {
        const atRoot = await this.enableV2Controllers(this.root);
        await mkdir(join(this.root, this.parent), { recursive: true });
        await this.enableV2Controllers(join(this.root, this.parent), atRoot);
        await mkdir(join(this.root, this.parent, name), { recursive: true });
      } else {
        for (const hierarchy of await this.controllerRoots()) {
          const parentDir = join(hierarchy, this.parent);
          const dir = join(parentDir, name);
          await mkdir(dir, { recursive: true });
          if (await exists(join(hierarchy, 'cpuset.cpus'))) {
            await this.inheritCpuset(hierarchy, parentDir);
            await this.inheritCpuset(parentDir, dir);
          }
        }
      }
    } catch (error) {
      throw this.wrap(`creating cgroup ${name}`, join(this.root, this.parent, name), error);
    }
    await this.update(name, limits);
    this.logger.info({ name, limits, version: this.version }, 'cgroup created');
  }

  /**
   * Sets all limits of an existing group to `limits`; absent fields become unlimited (level-triggered:
   * the result does not depend on earlier values).
   * @throws {InvalidError} for bad limits; {@link CgroupError} when a file cannot be written (e.g. the
   * group does not exist, or a new memory limit is below current usage and the kernel cannot reclaim).
   */
  async update(name: string, limits: CgroupLimits): Promise<void> {
    assertName(name);
    validateLimits(limits);
    try {
      if (this.version === 'v2') await this.updateV2(join(this.root, this.parent, name), limits);
      else await this.updateV1(name, limits);
    } catch (error) {
      throw this.wrap(`setting limits of cgroup ${name}`, join(this.root, this.parent, name), error);
    }
  }

  /**
   * Moves process `pid` (with its threads) into group `name`: `cgroup.procs` of every directory from
   * {@link directories}. The OCI runtime normally does this itself via `cgroupsPath`.
   * @throws {CgroupError} when a write fails (no such process, group missing).
   */
  async addProcess(name: string, pid: number): Promise<void> {
    for (const dir of await this.directories(name)) {
      try {
        await writeFile(join(dir, 'cgroup.procs'), `${pid}\n`);
      } catch (error) {
        throw this.wrap(`moving process ${pid} into cgroup ${name}`, dir, error);
      }
    }
  }

  /**
   * Removes group `name` with rmdir(2) in every mounted hierarchy under the root, including ones Warren
   * does not set limits in (runc also creates the path in e.g. name=systemd and the hybrid `unified`
   * mount). Kills nothing. Idempotent.
   * @returns whether any directory was removed.
   * @throws {CgroupBusyError} when a directory still has tasks or child groups; {@link CgroupError} otherwise.
   */
  async remove(name: string): Promise<boolean> {
    assertName(name);
    let removed = false;
    for (const hierarchy of await this.allHierarchies()) {
      removed = (await this.removeDir(join(hierarchy, this.parent, name))) || removed;
    }
    if (removed) this.logger.info({ name }, 'cgroup removed');
    return removed;
  }

  /**
   * Removes the `/<parent>` directory itself in every hierarchy when it is empty (uninstall, tests).
   * @returns whether it is gone everywhere.
   * @throws {CgroupError} for failures other than "still in use".
   */
  async removeParent(): Promise<boolean> {
    let gone = true;
    for (const hierarchy of await this.allHierarchies()) {
      try {
        await this.removeDir(join(hierarchy, this.parent));
      } catch (error) {
        if (!(error instanceof CgroupBusyError)) throw error;
        gone = false;
      }
    }
    return gone;
  }

  /**
   * Names of the groups under `/<parent>` in any hierarchy (for adoption and orphan removal).
   * @returns sorted names; empty when the parent does not exist.
   */
  async list(): Promise<string[]> {
    const names = new Set<string>();
    for (const hierarchy of await this.allHierarchies()) {
      let entries;
      try {
        entries = await readdir(join(hierarchy, this.parent), { withFileTypes: true });
      } catch (error) {
        if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') continue;
        throw this.wrap('listing cgroups', join(hierarchy, this.parent), error);
      }
      for (const entry of entries) if (entry.isDirectory()) names.add(entry.name);
    }
    return [...names].sort();
  }

  /**
   * Reads usage counters of group `name` (see {@link CgroupStats} for units and sources).
   * @throws {CgroupError} when the group does not exist.
   */
  async stats(name: string): Promise<CgroupStats> {
    assertName(name);
    try {
      return this.version === 'v2' ? await this.statsV2(name) : await this.statsV1(name);
    } catch (error) {
      throw this.wrap(`reading stats of cgroup ${name}`, join(this.root, this.parent, name), error);
    }
  }

  // ---- v1 ----

  private async updateV1(name: string, limits: CgroupLimits): Promise<void> {
    const cpu = join(this.root, 'cpu', this.parent, name);
    const memory = join(this.root, 'memory', this.parent, name);
    const pids = join(this.root, 'pids', this.parent, name);
    if (limits.cpuMillicores !== undefined || (await exists(cpu))) {
      await writeFile(join(cpu, 'cpu.cfs_period_us'), `${CPU_PERIOD_MICROSECONDS}\n`);
      const quota = limits.cpuMillicores === undefined ? -1 : cpuQuotaMicroseconds(limits.cpuMillicores);
      await writeFile(join(cpu, 'cpu.cfs_quota_us'), `${quota}\n`);
    }
    if (limits.memoryBytes !== undefined || (await exists(memory))) {
      const limit = limits.memoryBytes ?? -1;
      const memsw = await this.v1SwapAccounting();
      if (!memsw) {
        if (limits.swapBytes) this.logger.warn({ name }, 'swap accounting is off; swapBytes ignored');
        await writeFile(join(memory, 'memory.limit_in_bytes'), `${limit}\n`);
      } else {
        const total = limits.memoryBytes === undefined ? -1 : limits.memoryBytes + (limits.swapBytes ?? 0);
        const currentTotal = singleValue(await readOptional(join(memory, 'memory.memsw.limit_in_bytes')));
        // memory.rst §5: memsw must stay >= memory at every step.
        const raising = limit === -1 || (!isUnlimited(currentTotal) && limit > (currentTotal ?? 0));
        if (raising) {
          await writeFile(join(memory, 'memory.memsw.limit_in_bytes'), `${total}\n`);
          await writeFile(join(memory, 'memory.limit_in_bytes'), `${limit}\n`);
        } else {
          await writeFile(join(memory, 'memory.limit_in_bytes'), `${limit}\n`);
          await writeFile(join(memory, 'memory.memsw.limit_in_bytes'), `${total}\n`);
        }
      }
    }
    if (limits.pids !== undefined || (await exists(pids))) {
      await writeFile(join(pids, 'pids.max'), `${limits.pids ?? 'max'}\n`);
    }
  }

  private async v1SwapAccounting(): Promise<boolean> {
    return this.swapAccounting ?? (await exists(join(this.root, 'memory', 'memory.memsw.limit_in_bytes')));
  }

  private async inheritCpuset(from: string, to: string): Promise<void> {
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if ((await readOptional(join(to, file)))?.trim()) continue;
      const value = (await readFile(join(from, file), 'utf8')).trim();
      await writeFile(join(to, file), `${value}\n`);
    }
  }

  private async statsV1(name: string): Promise<CgroupStats> {
    const file = (controller: string, leaf: string): Promise<string | undefined> =>
      readOptional(join(this.root, controller, this.parent, name, leaf));
    if (!(await exists(join(this.root, 'memory', this.parent, name))) && !(await exists(join(this.root, 'cpu', this.parent, name)))) {
      throw Object.assign(new Error(`no such cgroup ${name}`), { code: 'ENOENT' });
    }
    const cpuStat = keyedValues(await file('cpu', 'cpu.stat'));
    const oom = keyedValues(await file('memory', 'memory.oom_control'));
    const stats: CgroupStats = {};
    assign(stats, 'cpuUsageNanoseconds', singleValue(await file('cpuacct', 'cpuacct.usage')));
    assign(stats, 'cpuThrottledPeriods', cpuStat.get('nr_throttled'));
    assign(stats, 'cpuThrottledNanoseconds', cpuStat.get('throttled_time'));
    assign(stats, 'memoryUsageBytes', singleValue(await file('memory', 'memory.usage_in_bytes')));
    assign(stats, 'memoryPeakBytes', singleValue(await file('memory', 'memory.max_usage_in_bytes')));
    assign(stats, 'oomKills', oom.get('oom_kill'));
    assign(stats, 'pids', singleValue(await file('pids', 'pids.current')));
    return stats;
  }

  // ---- v2 ----

  /**
   * Enables the wanted controllers in `dir`'s subtree_control.
   * @param inherited what the parent's subtree_control holds, used when `dir/cgroup.controllers` cannot be
   *   read (a child's cgroup.controllers is its parent's subtree_control).
   * @returns the controllers enabled in `dir`'s subtree_control afterwards.
   */
  private async enableV2Controllers(dir: string, inherited: readonly string[] = []): Promise<string[]> {
    const tokens = (text: string | undefined): string[] =>
      (text ?? '').split(/\s+/).flatMap((token) => (token ? [token.replace(/^\+/, '')] : []));
    const listed = await readOptional(join(dir, 'cgroup.controllers'));
    const allowed = listed === undefined ? inherited : tokens(listed);
    const enabled = tokens(await readOptional(join(dir, 'cgroup.subtree_control')));
    const wanted = V2_CONTROLLERS.filter((controller) => allowed.includes(controller) && !enabled.includes(controller));
    if (wanted.length > 0) {
      await writeFile(join(dir, 'cgroup.subtree_control'), `${wanted.map((controller) => `+${controller}`).join(' ')}\n`);
    }
    return [...enabled, ...wanted];
  }

  private async updateV2(dir: string, limits: CgroupLimits): Promise<void> {
    await stat(dir); // fail with ENOENT rather than create stray files on a fake root
    const quota = limits.cpuMillicores === undefined ? 'max' : String(cpuQuotaMicroseconds(limits.cpuMillicores));
    await writeFile(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_MICROSECONDS}\n`);
    await writeFile(join(dir, 'memory.max'), `${limits.memoryBytes ?? 'max'}\n`);
    const swapAccounting = this.swapAccounting ?? (await exists(join(dir, 'memory.swap.max')));
    if (swapAccounting) {
      const swap = limits.memoryBytes === undefined ? 'max' : String(limits.swapBytes ?? 0);
      await writeFile(join(dir, 'memory.swap.max'), `${swap}\n`);
    } else if (limits.swapBytes) {
      this.logger.warn({ dir }, 'swap accounting is off; swapBytes ignored');
    }
    await writeFile(join(dir, 'pids.max'), `${limits.pids ?? 'max'}\n`);
  }

  private async statsV2(name: string): Promise<CgroupStats> {
    const dir = join(this.root, this.parent, name);
    await stat(dir);
    const cpuStat = keyedValues(await readOptional(join(dir, 'cpu.stat')));
    const events = keyedValues(await readOptional(join(dir, 'memory.events')));
    const micro = (value: number | undefined): number | undefined => (value === undefined ? undefined : value * 1000);
    const stats: CgroupStats = {};
    assign(stats, 'cpuUsageNanoseconds', micro(cpuStat.get('usage_usec')));
    assign(stats, 'cpuThrottledPeriods', cpuStat.get('nr_throttled'));
    assign(stats, 'cpuThrottledNanoseconds', micro(cpuStat.get('throttled_usec')));
    assign(stats, 'memoryUsageBytes', singleValue(await readOptional(join(dir, 'memory.current'))));
    assign(stats, 'memoryPeakBytes', singleValue(await readOptional(join(dir, 'memory.peak'))));
    assign(stats, 'oomKills', events.get('oom_kill'));
    assign(stats, 'pids', singleValue(await readOptional(join(dir, 'pids.current'))));
    return stats;
  }

  // ---- shared ----

  /** v1: the controller hierarchies Warren writes limits in (present ones, deduplicated); v2: the root. */
  private async controllerRoots(): Promise<string[]> {
    if (this.version === 'v2') return [this.root];
    const seen = new Set<string>();
    const roots: string[] = [];
    for (const controller of V1_CONTROLLERS) {
      const path = join(this.root, controller);
      let real: string;
      try {
        real = await realpath(path);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') continue; // controller not mounted on this host
        throw error;
      }
      if (seen.has(real)) continue;
      seen.add(real);
      roots.push(path);
    }
    return roots;
  }

  /** v1: every directory under the root (each a mounted hierarchy, deduplicated); v2: the root. */
  private async allHierarchies(): Promise<string[]> {
    if (this.version === 'v2') return [this.root];
    const seen = new Set<string>();
    const roots: string[] = [];
    for (const entry of (await readdir(this.root)).sort()) {
      const path = join(this.root, entry);
      try {
        if (!(await stat(path)).isDirectory()) continue;
        const real = await realpath(path);
        if (seen.has(real)) continue;
        seen.add(real);
        roots.push(path);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT') throw error;
      }
    }
    return roots;
  }

  private async removeDir(dir: string): Promise<boolean> {
    try {
      await rmdir(dir);
      return true;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT') return false;
      if (code === 'EBUSY' || code === 'ENOTEMPTY') throw new CgroupBusyError(dir, { cause: error });
      throw this.wrap('removing cgroup', dir, error);
    }
  }

  private wrap(what: string, path: string, error: unknown): Error {
    if (error instanceof WarrenError) return error;
    return new CgroupError(`${what} failed: ${errorMessage(error)}`, path, { cause: error });
  }
}

function assign<K extends keyof CgroupStats>(stats: CgroupStats, key: K, value: CgroupStats[K] | undefined): void {
  if (value !== undefined) stats[key] = value;
}
