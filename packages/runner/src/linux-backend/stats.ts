// An environment's usage for metrics and `warren env top`: its cgroup's counters and limits (CgroupManager.stats)
// and its disk quota's usage (statfs of its disk, disk.ts), in the units of the API's EnvironmentStats.
import type { EnvironmentStats } from '@warren/api';
import { CgroupError, type CgroupStats, type DiskUsage } from '../linux/index.js';
import type { BackendContext } from './context.js';
import { locateEnvironment, observeDisk } from './disk.js';

/**
 * Reads environment `environmentId`'s usage now from its cgroup (named after the environment) and, when its class
 * has a disk quota, from its mounted disk (statfs; no directory walk).
 * @returns undefined when it has no cgroup (stopped, removed, never started here).
 * @throws {CgroupError} when a cgroup file exists but cannot be read.
 */
export async function environmentStats(backend: BackendContext, environmentId: string): Promise<EnvironmentStats | undefined> {
  let cgroup: CgroupStats;
  try {
    cgroup = await backend.cgroups.stats(environmentId);
  } catch (error) {
    if (error instanceof CgroupError && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return undefined;
    throw error;
  }
  const disk = await locateEnvironment(backend, environmentId)
    .then(observeDisk)
    .catch(() => undefined);
  return statsFromCgroup(environmentId, cgroup, new Date(), disk);
}

/** Maps cgroup figures (nanoseconds) and disk usage to the API's {@link EnvironmentStats} (seconds); absent stays absent. */
export function statsFromCgroup(environmentId: string, cgroup: CgroupStats, sampleTime: Date, disk?: DiskUsage): EnvironmentStats {
  const seconds = (nanoseconds: number | undefined) => (nanoseconds === undefined ? undefined : nanoseconds / 1e9);
  const fields: Omit<EnvironmentStats, 'environmentId' | 'sampleTime'> = {
    cpuUsageSeconds: seconds(cgroup.cpuUsageNanoseconds),
    cpuLimitMillicores: cgroup.cpuLimitMillicores,
    cpuThrottledPeriods: cgroup.cpuThrottledPeriods,
    cpuThrottledSeconds: seconds(cgroup.cpuThrottledNanoseconds),
    memoryUsageBytes: cgroup.memoryUsageBytes,
    memoryLimitBytes: cgroup.memoryLimitBytes,
    swapUsageBytes: cgroup.swapUsageBytes,
    swapLimitBytes: cgroup.swapLimitBytes,
    oomKills: cgroup.oomKills,
    ioReadBytes: cgroup.ioReadBytes,
    ioWriteBytes: cgroup.ioWriteBytes,
    ioReadOperations: cgroup.ioReadOperations,
    ioWriteOperations: cgroup.ioWriteOperations,
    pids: cgroup.pids,
    pidsLimit: cgroup.pidsLimit,
    diskUsedBytes: disk?.usedBytes,
    diskLimitBytes: disk?.limitBytes,
  };
  const defined = Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
  return { environmentId, sampleTime: sampleTime.toISOString(), ...defined };
}
