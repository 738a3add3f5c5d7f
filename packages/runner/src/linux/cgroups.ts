// Per-environment cgroups (cgroupfs driver; there is no systemd here): creation, limits, stats and
// removal under one `warren` parent, on cgroup v1 (incl. the "hybrid" layout) and cgroup v2 hosts.
// The CgroupManager facade; the drivers are cgroup-v1.ts and cgroup-v2.ts, the limit types cgroup-limits.ts.
import { readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError, type Logger, type Reason, WarrenError, errorMessage, silentLogger } from '@warren/base';
import { type CgroupLayout, errnoCode, exists } from './cgroup-fs.js';
import { type CgroupLimits, type CgroupStats, validateLimits } from './cgroup-limits.js';
import {
  type CgroupCpuSample,
  type InteractiveGroup,
  addInteractiveProcess,
  ensureInteractiveGroup,
  readCpuSample,
  removeInteractiveGroup,
  writeCpuQuota,
} from './cgroup-cpu.js';
import { V1_CONTROLLERS, createV1, statsV1, updateV1, v1ControllerRoots, v1Hierarchies } from './cgroup-v1.js';
import { createV2, statsV2, updateV2 } from './cgroup-v2.js';

/**
 * Name of the group under the runner's cgroup parent (`/<parent>/background`); not an environment id, so orphan
 * cleanup leaves it alone, and a second runner with another parent never touches it.
 */
export const BACKGROUND_CGROUP = 'background';

// The names this module exported before the v1/v2 split, so importers of './cgroups.js' keep working.
export { CPU_PERIOD_MICROSECONDS, MIN_CPU_MILLICORES, cpuQuotaMicroseconds, ociLinuxResources, validateLimits } from './cgroup-limits.js';
export type { CgroupLimits, CgroupStats, OciLinuxResources } from './cgroup-limits.js';
export { V1_CONTROLLERS } from './cgroup-v1.js';
export { V2_CONTROLLERS } from './cgroup-v2.js';

/** cgroup v1 (separate hierarchies per controller) or v2 (one unified hierarchy). */
export type CgroupVersion = 'v1' | 'v2';

/** Where the kernel's cgroup filesystems are mounted on systemd-style and most other hosts. */
export const CGROUP_ROOT = '/sys/fs/cgroup';
/** Parent of every Warren cgroup: groups live at `/warren/<name>` in each hierarchy. */
export const CGROUP_PARENT = 'warren';

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
      if (this.version === 'v2') await createV2(this.layout(), name);
      else await createV1(this.layout(), name);
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
      if (this.version === 'v2') await updateV2(this.layout(), join(this.root, this.parent, name), limits);
      else await updateV1(this.layout(), name, limits);
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
    const hierarchies = await this.allHierarchies();
    // The interactive sub-group (cgroup-cpu.ts) goes first: rmdir(2) of a group with a child fails.
    await removeInteractiveGroup(this.layout(), hierarchies, name).catch((error: unknown) => {
      throw this.wrap(`removing the interactive sub-group of cgroup ${name}`, join(this.root, this.parent, name), error);
    });
    for (const hierarchy of hierarchies) {
      removed = (await this.removeDir(join(hierarchy, this.parent, name))) || removed;
    }
    if (removed) this.logger.info({ name }, 'cgroup removed');
    return removed;
  }

  /**
   * Removes the `/<parent>` directory itself in every hierarchy when it is empty (uninstall, tests), after the idle
   * background group (background-cgroup.ts).
   * @returns whether it is gone everywhere.
   * @throws {CgroupError} for failures other than "still in use".
   */
  async removeParent(): Promise<boolean> {
    let gone = true;
    // Warren's own group for its heavy IO (background-cgroup.ts) goes with the parent once it is idle.
    await this.remove(BACKGROUND_CGROUP).catch((error: unknown) => {
      if (!(error instanceof CgroupBusyError)) throw error;
    });
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
   * Names of the groups under `/<parent>` in any hierarchy (for adoption and orphan removal), except Warren's own
   * background group (background-cgroup.ts).
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
      for (const entry of entries) if (entry.isDirectory() && entry.name !== BACKGROUND_CGROUP) names.add(entry.name);
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
      return this.version === 'v2' ? await statsV2(join(this.root, this.parent, name)) : await statsV1(this.layout(), name);
    } catch (error) {
      throw this.wrap(`reading stats of cgroup ${name}`, join(this.root, this.parent, name), error);
    }
  }

  /**
   * Reads the CPU counters and the CFS quota of group `name` (the burst controller's sample; cgroup-cpu.ts).
   * @returns undefined when the group does not exist.
   * @throws {CgroupError} when a file cannot be read.
   */
  async cpuSample(name: string): Promise<CgroupCpuSample | undefined> {
    assertName(name);
    try {
      return await readCpuSample(this.layout(), this.version, name);
    } catch (error) {
      throw this.wrap(`reading the CPU counters of cgroup ${name}`, join(this.root, this.parent, name), error);
    }
  }

  /**
   * Sets the CFS quota of group `name` to `millicores` (v1 `cpu.cfs_quota_us`, v2 `cpu.max`), keeping its period.
   * @throws {CgroupError} when the group does not exist or the kernel refuses the value.
   */
  async setCpuQuota(name: string, millicores: number): Promise<void> {
    assertName(name);
    try {
      await writeCpuQuota(this.layout(), this.version, name, millicores);
    } catch (error) {
      throw this.wrap(`setting the CPU quota of cgroup ${name}`, join(this.root, this.parent, name), error);
    }
  }

  /**
   * Makes the `interactive` sub-group of group `name` (idempotent), weighted above the group's other processes
   * (cgroup-cpu.ts {@link ensureInteractiveGroup}: v1 always; v2 only when the group has no processes itself).
   * @returns the sub-group, or undefined with the reason the host cannot have one.
   * @throws {CgroupError} when the group does not exist or a file cannot be written.
   */
  async ensureInteractiveGroup(name: string): Promise<{ group: InteractiveGroup } | { group: undefined; reason: string }> {
    assertName(name);
    try {
      return await ensureInteractiveGroup(this.layout(), this.version, name);
    } catch (error) {
      throw this.wrap(`creating the interactive sub-group of cgroup ${name}`, join(this.root, this.parent, name), error);
    }
  }

  /**
   * Moves host process `pid` into group `name`'s interactive sub-group, making the sub-group when missing.
   * @returns false (nothing moved) when the host cannot have the sub-group ({@link ensureInteractiveGroup}).
   * @throws {CgroupError} when the group does not exist or the process is gone.
   */
  async addInteractiveProcess(name: string, pid: number): Promise<boolean> {
    const made = await this.ensureInteractiveGroup(name);
    if (!made.group) return false;
    try {
      await addInteractiveProcess(made.group, pid);
      return true;
    } catch (error) {
      throw this.wrap(`moving process ${pid} into the interactive sub-group of cgroup ${name}`, made.group.procsFiles[0] ?? '', error);
    }
  }

  // ---- shared ----

  /** What the v1/v2 drivers need: root, parent, swap accounting override, logger. */
  private layout(): CgroupLayout {
    return { root: this.root, parent: this.parent, swapAccounting: this.swapAccounting, logger: this.logger };
  }

  /** v1: the controller hierarchies Warren writes limits in (present ones, deduplicated); v2: the root. */
  private async controllerRoots(): Promise<string[]> {
    return this.version === 'v2' ? [this.root] : await v1ControllerRoots(this.root);
  }

  /** v1: every directory under the root (each a mounted hierarchy, deduplicated); v2: the root. */
  private async allHierarchies(): Promise<string[]> {
    return this.version === 'v2' ? [this.root] : await v1Hierarchies(this.root);
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
