// CPU pieces of CgroupManager for the burst controller (resources/): reading and writing a group's CFS quota,
// and the `interactive` sub-group that processes of terminals, SSH sessions and execs run in (v1 and v2).
// docs/design/0015-cpu-burst-controller.md.
import { mkdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CgroupLayout, errnoCode, exists, keyedValues, readOptional } from './cgroup-fs.js';
import { CPU_PERIOD_MICROSECONDS, MIN_CPU_MILLICORES } from './cgroup-limits.js';

/** Name of the sub-group of an environment's group that interactive processes run in. */
export const INTERACTIVE_CGROUP = 'interactive';
/**
 * v1 `cpu.shares` of the interactive sub-group. Inside the environment's group its own tasks compete with the
 * sub-group as siblings, each task weighing 1024 at nice 0 (Documentation/scheduler/sched-design-CFS.rst, "Group
 * scheduler extensions"): 8192 keeps a terminal ahead of a build of up to 8 busy processes.
 */
export const INTERACTIVE_CPU_SHARES = 8192;
/** v2 `cpu.weight` of the interactive leaf (the `workload` leaf keeps the default 100). */
export const INTERACTIVE_CPU_WEIGHT = 800;

/** A group's CPU counters and quota, for one period of the burst controller. */
export interface CgroupCpuSample {
  /** CPU time used since the group was made, nanoseconds (v1 cpuacct.usage; v2 cpu.stat usage_usec * 1000). */
  usageNanoseconds: number;
  /** CFS periods throttled since the group was made (cpu.stat nr_throttled). */
  throttledPeriods: number;
  /** Time throttled since the group was made, nanoseconds (v1 throttled_time; v2 throttled_usec * 1000). */
  throttledNanoseconds: number;
  /** The quota in force, millicores; undefined when unlimited (v1 -1, v2 "max"). */
  quotaMillicores: number | undefined;
}

/** Where a group's CPU files are: v1 the `cpu` and `cpuacct` hierarchies (co-mounted or not), v2 the one directory. */
function cpuDirectories(layout: CgroupLayout, version: 'v1' | 'v2', name: string): { cpu: string; cpuacct: string } {
  if (version === 'v2') {
    const dir = join(layout.root, layout.parent, name);
    return { cpu: dir, cpuacct: dir };
  }
  return { cpu: join(layout.root, 'cpu', layout.parent, name), cpuacct: join(layout.root, 'cpuacct', layout.parent, name) };
}

/**
 * Reads the CPU counters and quota of group `name`.
 * @returns undefined when the group does not exist (the environment stopped meanwhile).
 * @throws the filesystem error for anything else.
 */
export async function readCpuSample(layout: CgroupLayout, version: 'v1' | 'v2', name: string): Promise<CgroupCpuSample | undefined> {
  const dirs = cpuDirectories(layout, version, name);
  const cpuStat = await readOptional(join(dirs.cpu, 'cpu.stat'));
  if (cpuStat === undefined) return undefined;
  const values = keyedValues(cpuStat);
  if (version === 'v2') {
    const max = await readOptional(join(dirs.cpu, 'cpu.max'));
    return {
      usageNanoseconds: (values.get('usage_usec') ?? 0) * 1000,
      throttledPeriods: values.get('nr_throttled') ?? 0,
      throttledNanoseconds: (values.get('throttled_usec') ?? 0) * 1000,
      quotaMillicores: max === undefined ? undefined : parseV2Quota(max),
    };
  }
  const usage = await readOptional(join(dirs.cpuacct, 'cpuacct.usage'));
  if (usage === undefined) return undefined;
  const quota = Number((await readFile(join(dirs.cpu, 'cpu.cfs_quota_us'), 'utf8')).trim());
  const period = Number((await readFile(join(dirs.cpu, 'cpu.cfs_period_us'), 'utf8')).trim());
  return {
    usageNanoseconds: Number(usage.trim()),
    throttledPeriods: values.get('nr_throttled') ?? 0,
    throttledNanoseconds: values.get('throttled_time') ?? 0,
    quotaMillicores: quota > 0 && period > 0 ? Math.round((quota * 1000) / period) : undefined,
  };
}

/** Parses v2 `cpu.max` ("<quota|max> <period>") into millicores; undefined for "max". */
export function parseV2Quota(text: string): number | undefined {
  const [quota, period] = text.trim().split(/\s+/);
  const periodValue = Number(period ?? CPU_PERIOD_MICROSECONDS);
  if (quota === undefined || quota === 'max' || !/^\d+$/.test(quota) || !(periodValue > 0)) return undefined;
  return Math.round((Number(quota) * 1000) / periodValue);
}

/**
 * Sets the CFS quota of group `name` to `millicores` in the group's own period (sched-bwc.rst; v1
 * `cpu.cfs_quota_us`, v2 `cpu.max`), leaving the period as the runtime set it.
 * @throws {RangeError} for less than 10 millicores; the filesystem error (ENOENT: no such group).
 */
export async function writeCpuQuota(layout: CgroupLayout, version: 'v1' | 'v2', name: string, millicores: number): Promise<void> {
  if (!Number.isFinite(millicores) || millicores < MIN_CPU_MILLICORES) {
    throw new RangeError(`a CPU quota must be at least ${MIN_CPU_MILLICORES} millicores (got ${millicores})`);
  }
  const { cpu } = cpuDirectories(layout, version, name);
  if (version === 'v2') {
    const current = await readFile(join(cpu, 'cpu.max'), 'utf8');
    const period = Number(current.trim().split(/\s+/)[1] ?? CPU_PERIOD_MICROSECONDS) || CPU_PERIOD_MICROSECONDS;
    await writeFile(join(cpu, 'cpu.max'), `${Math.round((millicores * period) / 1000)} ${period}\n`);
    return;
  }
  const period = Number((await readFile(join(cpu, 'cpu.cfs_period_us'), 'utf8')).trim()) || CPU_PERIOD_MICROSECONDS;
  await writeFile(join(cpu, 'cpu.cfs_quota_us'), `${Math.round((millicores * period) / 1000)}\n`);
}

/** Where interactive processes of an environment go, and whether that is possible on this host. */
export interface InteractiveGroup {
  /** The `cgroup.procs` files a process is written to (v1: the cpu hierarchy's sub-group; v2: the leaf). */
  procsFiles: string[];
}

/**
 * Makes the interactive sub-group of group `name` (idempotent) with a higher CPU weight than the group's other
 * processes.
 * - v1: `<cpu>/<parent>/<name>/interactive` with `cpu.shares` = {@link INTERACTIVE_CPU_SHARES}, in the cpu
 *   hierarchy only (memory, pids, cpuacct and the rest keep charging the environment's group, so its limits
 *   and usage still cover the process; a co-mounted cpuacct moves along, which changes nothing: v1 usage is
 *   hierarchical).
 * - v2: the no-internal-process rule (cgroup-v2.rst "No Internal Process Constraint") forbids enabling `cpu`
 *   for children of a group that has processes, and the runtime puts the container in the group itself, so
 *   this works only when the group has no processes of its own (the container in a `workload` leaf). Then
 *   `+cpu` goes in the group's `subtree_control` and the leaf gets `cpu.weight` = {@link INTERACTIVE_CPU_WEIGHT}.
 * @returns the group, or undefined with the reason when the host cannot have it.
 * @throws the filesystem error (ENOENT: the environment's group does not exist).
 */
export async function ensureInteractiveGroup(
  layout: CgroupLayout,
  version: 'v1' | 'v2',
  name: string,
): Promise<{ group: InteractiveGroup } | { group: undefined; reason: string }> {
  const { cpu } = cpuDirectories(layout, version, name);
  await stat(cpu);
  const dir = join(cpu, INTERACTIVE_CGROUP);
  if (version === 'v1') {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'cpu.shares'), `${INTERACTIVE_CPU_SHARES}\n`);
    return { group: { procsFiles: [join(dir, 'cgroup.procs')] } };
  }
  const own = (await readOptional(join(cpu, 'cgroup.procs')))?.trim();
  if (own) {
    return {
      group: undefined,
      reason:
        'cgroup v2: the container runs in the environment group itself, so the no-internal-process rule keeps the cpu controller from its sub-groups',
    };
  }
  const subtree = (await readOptional(join(cpu, 'cgroup.subtree_control'))) ?? '';
  if (!subtree.split(/\s+/).includes('cpu')) await writeFile(join(cpu, 'cgroup.subtree_control'), '+cpu\n');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cpu.weight'), `${INTERACTIVE_CPU_WEIGHT}\n`);
  return { group: { procsFiles: [join(dir, 'cgroup.procs')] } };
}

/**
 * Moves process `pid` (a host pid, with its threads) into the interactive sub-group.
 * @throws the filesystem error (ESRCH: the process is gone).
 */
export async function addInteractiveProcess(group: InteractiveGroup, pid: number): Promise<void> {
  for (const file of group.procsFiles) await writeFile(file, `${pid}\n`);
}

/**
 * Removes the interactive sub-group of group `name` in every hierarchy listed in `hierarchies` (before the
 * group itself: rmdir(2) of a group with a child fails). Idempotent.
 * @returns the directories removed.
 * @throws the filesystem error (EBUSY while it has processes).
 */
export async function removeInteractiveGroup(layout: CgroupLayout, hierarchies: readonly string[], name: string): Promise<string[]> {
  const removed: string[] = [];
  for (const hierarchy of hierarchies) {
    const dir = join(hierarchy, layout.parent, name, INTERACTIVE_CGROUP);
    if (!(await exists(dir))) continue;
    try {
      await rmdir(dir);
      removed.push(dir);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
  }
  return removed;
}
