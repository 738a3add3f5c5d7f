// The cgroup v1 driver of CgroupManager (Documentation/admin-guide/cgroup-v1/): one directory per
// controller hierarchy, CFS quota, memory + memsw limits, pids, cpuset inheritance, and usage counters.
import { mkdir, readFile, readdir, realpath, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CgroupLayout, assignStat, errnoCode, exists, keyedValues, readOptional, singleValue } from './cgroup-fs.js';
import { applyV1IoLimits } from './cgroup-io.js';
import { CPU_PERIOD_MICROSECONDS, type CgroupLimits, type CgroupStats, cpuQuotaMicroseconds, cpuSharesOf } from './cgroup-limits.js';
import { millicoresOfQuota, v1BlkioTotals } from './cgroup-stats.js';

/** v1 controllers a Warren group is created in (Documentation/admin-guide/cgroup-v1/*.rst). */
export const V1_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids', 'freezer', 'devices', 'blkio', 'cpuset'] as const;

/** The kernel prints "no limit" on v1 memory files as PAGE_COUNTER_MAX pages (~2^63); anything >= 2^62 is unlimited. */
function isUnlimited(value: number | undefined): boolean {
  return value === undefined || value < 0 || value >= 2 ** 62;
}

/**
 * The controller hierarchies Warren writes limits in: `<root>/<controller>` for each of
 * {@link V1_CONTROLLERS} that is mounted, deduplicated by real path (co-mounted `cpu,cpuacct` once).
 * @throws the filesystem error for anything but a missing controller.
 */
export async function v1ControllerRoots(root: string): Promise<string[]> {
  const seen = new Set<string>();
  const roots: string[] = [];
  for (const controller of V1_CONTROLLERS) {
    const path = join(root, controller);
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

/**
 * Every directory under `root` (each a mounted hierarchy, including name=systemd and the hybrid
 * `unified` mount), sorted, deduplicated by real path.
 * @throws the filesystem error for anything but an entry vanishing meanwhile.
 */
export async function v1Hierarchies(root: string): Promise<string[]> {
  const seen = new Set<string>();
  const roots: string[] = [];
  for (const entry of (await readdir(root)).sort()) {
    const path = join(root, entry);
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

/**
 * Creates `/<parent>/<name>` (idempotent) in every controller hierarchy, copying `cpuset.cpus` and
 * `cpuset.mems` down from the hierarchy root, since a new cpuset is empty and refuses tasks (cpusets.rst §1.9).
 * @throws the filesystem error.
 */
export async function createV1(layout: CgroupLayout, name: string): Promise<void> {
  for (const hierarchy of await v1ControllerRoots(layout.root)) {
    const parentDir = join(hierarchy, layout.parent);
    const dir = join(parentDir, name);
    await mkdir(dir, { recursive: true });
    if (await exists(join(hierarchy, 'cpuset.cpus'))) {
      await inheritCpuset(hierarchy, parentDir);
      await inheritCpuset(parentDir, dir);
    }
  }
}

async function inheritCpuset(from: string, to: string): Promise<void> {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    if ((await readOptional(join(to, file)))?.trim()) continue;
    const value = (await readFile(join(from, file), 'utf8')).trim();
    await writeFile(join(to, file), `${value}\n`);
  }
}

/**
 * Writes all limits of group `name`; absent fields become unlimited. `cpu.cfs_period_us` = 100000,
 * `cpu.cfs_quota_us` = millicores * 100 or -1 (sched-bwc.rst); `cpu.shares` from the CPU request (default 1024);
 * `memory.soft_limit_in_bytes` = the memory request or -1 (memory.rst §7); `memory.limit_in_bytes` and
 * `memory.memsw.limit_in_bytes` = memory + swap, in the order that keeps memsw >= memory (memory.rst
 * §2.4, §5); `pids.max` (pids.rst); `blkio.throttle.*` per device (cgroup-io.ts; without a blkio hierarchy
 * that is logged and skipped). A controller is skipped when neither limited nor present.
 * @throws the filesystem error (e.g. the group does not exist, or the kernel cannot reclaim down to a new limit).
 */
export async function updateV1(layout: CgroupLayout, name: string, limits: CgroupLimits): Promise<void> {
  const cpu = join(layout.root, 'cpu', layout.parent, name);
  const memory = join(layout.root, 'memory', layout.parent, name);
  const pids = join(layout.root, 'pids', layout.parent, name);
  if (limits.cpuMillicores !== undefined || (await exists(cpu))) {
    await writeFile(join(cpu, 'cpu.cfs_period_us'), `${CPU_PERIOD_MICROSECONDS}\n`);
    const quota = limits.cpuMillicores === undefined ? -1 : cpuQuotaMicroseconds(limits.cpuMillicores);
    await writeFile(join(cpu, 'cpu.cfs_quota_us'), `${quota}\n`);
    const shares = limits.cpuRequestMillicores === undefined ? 1024 : cpuSharesOf(limits.cpuRequestMillicores);
    await writeFile(join(cpu, 'cpu.shares'), `${shares}\n`);
  }
  if (limits.memoryBytes !== undefined || (await exists(memory))) {
    // memory.rst §7: under global memory pressure, groups above their soft limit are reclaimed first.
    await writeFile(join(memory, 'memory.soft_limit_in_bytes'), `${limits.memoryRequestBytes ?? -1}\n`);
    const limit = limits.memoryBytes ?? -1;
    const memsw = layout.swapAccounting ?? (await exists(join(layout.root, 'memory', 'memory.memsw.limit_in_bytes')));
    if (!memsw) {
      if (limits.swapBytes) layout.logger.warn({ name }, 'swap accounting is off; swapBytes ignored');
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
  await applyV1IoLimits(join(layout.root, 'blkio', layout.parent, name), limits.io ?? [], layout.logger);
}

/**
 * Reads the usage counters and limits of group `name` from the cpu, cpuacct, memory, pids and blkio hierarchies.
 * @throws an ENOENT error when the group exists in neither the memory nor the cpu hierarchy.
 */
export async function statsV1(layout: CgroupLayout, name: string): Promise<CgroupStats> {
  const file = (controller: string, leaf: string): Promise<string | undefined> =>
    readOptional(join(layout.root, controller, layout.parent, name, leaf));
  if (!(await exists(join(layout.root, 'memory', layout.parent, name))) && !(await exists(join(layout.root, 'cpu', layout.parent, name)))) {
    throw Object.assign(new Error(`no such cgroup ${name}`), { code: 'ENOENT' });
  }
  const cpuStat = keyedValues(await file('cpu', 'cpu.stat'));
  const oom = keyedValues(await file('memory', 'memory.oom_control'));
  const stats: CgroupStats = {};
  assignStat(stats, 'cpuUsageNanoseconds', singleValue(await file('cpuacct', 'cpuacct.usage')));
  assignStat(stats, 'cpuThrottledPeriods', cpuStat.get('nr_throttled'));
  assignStat(stats, 'cpuThrottledNanoseconds', cpuStat.get('throttled_time'));
  assignStat(stats, 'memoryUsageBytes', singleValue(await file('memory', 'memory.usage_in_bytes')));
  assignStat(stats, 'memoryPeakBytes', singleValue(await file('memory', 'memory.max_usage_in_bytes')));
  assignStat(stats, 'oomKills', oom.get('oom_kill'));
  assignStat(stats, 'pids', singleValue(await file('pids', 'pids.current')));
  assignStat(stats, 'pidsLimit', singleValue(await file('pids', 'pids.max')));
  const quota = await file('cpu', 'cpu.cfs_quota_us');
  assignStat(stats, 'cpuLimitMillicores', millicoresOfQuota(quota?.trim(), singleValue(await file('cpu', 'cpu.cfs_period_us'))));
  const memoryLimit = singleValue(await file('memory', 'memory.limit_in_bytes'));
  if (!isUnlimited(memoryLimit)) stats.memoryLimitBytes = memoryLimit;
  const memswUsage = singleValue(await file('memory', 'memory.memsw.usage_in_bytes'));
  if (memswUsage !== undefined && stats.memoryUsageBytes !== undefined) {
    stats.swapUsageBytes = Math.max(0, memswUsage - stats.memoryUsageBytes);
  }
  const memswLimit = singleValue(await file('memory', 'memory.memsw.limit_in_bytes'));
  if (memswLimit !== undefined && memoryLimit !== undefined && !isUnlimited(memswLimit) && !isUnlimited(memoryLimit)) {
    stats.swapLimitBytes = Math.max(0, memswLimit - memoryLimit);
  }
  const bytes = v1BlkioTotals(await file('blkio', 'blkio.throttle.io_service_bytes'));
  const operations = v1BlkioTotals(await file('blkio', 'blkio.throttle.io_serviced'));
  assignStat(stats, 'ioReadBytes', bytes?.read);
  assignStat(stats, 'ioWriteBytes', bytes?.write);
  assignStat(stats, 'ioReadOperations', operations?.read);
  assignStat(stats, 'ioWriteOperations', operations?.write);
  return stats;
}
