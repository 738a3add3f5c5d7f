// Resource limits and usage figures of a Warren cgroup: their types, validation, CFS arithmetic, and
// their mapping to OCI runtime-spec `linux.resources`.
import { InvalidError } from '@warren/base';
import { type DeviceIoLimits, type OciBlockIo, ociBlockIo, validateIoLimits } from './cgroup-io.js';

/**
 * CFS period in microseconds. Quota = millicores * 100 so that 1000 millicores = one CPU
 * (Documentation/scheduler/sched-bwc.rst; the same rule Kubernetes and runc use).
 */
export const CPU_PERIOD_MICROSECONDS = 100_000;
/** Lowest CPU limit: the kernel rejects a quota below 1 ms (sched-bwc.rst), i.e. 10 millicores. */
export const MIN_CPU_MILLICORES = 10;

/**
 * Resource limits of one group; an absent field means "unlimited".
 * - `cpuMillicores`: CPU time, 1000 = one CPU (CFS bandwidth), at least 10.
 * - `memoryBytes`: memory (RAM + page cache) limit in bytes; the kernel rounds it down to whole pages.
 * - `swapBytes`: swap allowed on top of `memoryBytes`; only with `memoryBytes`; absent = no swap.
 * - `pids`: maximum number of tasks (processes + threads).
 * - `io`: bandwidth and IOPS limits per block device (cgroup-io.ts); absent or empty = none.
 * - `cpuRequestMillicores`: the CPU guarantee, as a relative weight ({@link cpuSharesOf} for v1 `cpu.shares`,
 *   {@link cpuWeightOf} for v2 `cpu.weight`); absent = the kernel default (1024 / 100, i.e. one core's worth).
 * - `memoryRequestBytes`: memory protected from reclaim while the group is under it (v1
 *   `memory.soft_limit_in_bytes`, best effort; v2 `memory.low`); absent = no protection.
 * docs/design/0010-requests-and-limits.md.
 */
export interface CgroupLimits {
  cpuMillicores?: number;
  memoryBytes?: number;
  cpuRequestMillicores?: number;
  memoryRequestBytes?: number;
  swapBytes?: number;
  pids?: number;
  io?: DeviceIoLimits[];
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
  /** Most tasks allowed (pids.max); absent when unlimited. */
  pidsLimit?: number;
  /** CPU limit in millicores from the CFS quota and period (v1 cpu.cfs_quota_us / cfs_period_us; v2 cpu.max); absent when unlimited. */
  cpuLimitMillicores?: number;
  /** Hard memory limit, bytes (v1 memory.limit_in_bytes; v2 memory.max); absent when unlimited. */
  memoryLimitBytes?: number;
  /** Swap in use, bytes (v1 memory.memsw.usage_in_bytes - memory.usage_in_bytes; v2 memory.swap.current). */
  swapUsageBytes?: number;
  /** Swap allowed, bytes (v1 memsw limit - memory limit; v2 memory.swap.max); absent when unlimited or not accounted. */
  swapLimitBytes?: number;
  /**
   * Bytes and operations of block IO, summed over devices (v1 blkio.throttle.io_service_bytes / io_serviced `Read`
   * and `Write`; v2 io.stat rbytes, wbytes, rios, wios). On v1, buffered writes are written back by the kernel's
   * flusher and charged to the root group, so only direct and synchronous IO shows (blkio-controller.rst).
   */
  ioReadBytes?: number;
  ioWriteBytes?: number;
  ioReadOperations?: number;
  ioWriteOperations?: number;
}

/** The subset of OCI runtime-spec `linux.resources` (config-linux.md) that carries {@link CgroupLimits}. */
export interface OciLinuxResources {
  /** `shares` is the v1 weight; on v2 runc converts it to `cpu.weight` by its own formula, not {@link cpuWeightOf}. */
  cpu?: { quota?: number; period?: number; shares?: number };
  /** `swap` is memory + swap, as in the spec ("limit of memory+Swap usage"); `reservation` is the soft limit (v2 `memory.low`). */
  memory?: { limit?: number; swap?: number; reservation?: number };
  pids?: { limit: number };
  blockIO?: OciBlockIo;
}

/**
 * Checks limit values: non-negative safe integers, cpu at least {@link MIN_CPU_MILLICORES}, pids at
 * least 1, and `swapBytes` only together with `memoryBytes`.
 * @throws {InvalidError} naming each bad field.
 */
export function validateLimits(limits: CgroupLimits): void {
  const causes: { field: string; message: string }[] = [];
  const check = (field: Exclude<keyof CgroupLimits, 'io'>, min: number): void => {
    const value = limits[field];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
      causes.push({ field, message: `must be an integer >= ${min}` });
    }
  };
  check('cpuMillicores', MIN_CPU_MILLICORES);
  check('memoryBytes', 1);
  check('swapBytes', 0);
  check('pids', 1);
  check('cpuRequestMillicores', 0);
  check('memoryRequestBytes', 0);
  if (limits.swapBytes !== undefined && limits.memoryBytes === undefined) {
    causes.push({ field: 'swapBytes', message: 'needs memoryBytes (swap is limited as memory + swap)' });
  }
  const above = (request: 'cpuRequestMillicores' | 'memoryRequestBytes', limit: 'cpuMillicores' | 'memoryBytes'): void => {
    const requested = limits[request];
    const limited = limits[limit];
    if (requested !== undefined && limited !== undefined && requested > limited) {
      causes.push({ field: request, message: `must be at most ${limit} (${limited})` });
    }
  };
  above('cpuRequestMillicores', 'cpuMillicores');
  above('memoryRequestBytes', 'memoryBytes');
  if (causes.length > 0) throw new InvalidError('invalid cgroup limits', causes);
  validateIoLimits(limits.io ?? []);
}

/**
 * The same limits as OCI `linux.resources`, for when the runtime (runc) should apply them instead of
 * the cgroup manager: cpu quota/period in microseconds and `shares` from the CPU request, memory limit,
 * memory+swap and `reservation` (the memory request) in bytes, pids, and `blockIO` throttle entries per device.
 * @throws {InvalidError} see {@link validateLimits}.
 */
export function ociLinuxResources(limits: CgroupLimits): OciLinuxResources {
  validateLimits(limits);
  const resources: OciLinuxResources = {};
  if (limits.cpuMillicores !== undefined) {
    resources.cpu = { quota: cpuQuotaMicroseconds(limits.cpuMillicores), period: CPU_PERIOD_MICROSECONDS };
  }
  if (limits.cpuRequestMillicores !== undefined) {
    resources.cpu = { ...resources.cpu, shares: cpuSharesOf(limits.cpuRequestMillicores) };
  }
  if (limits.memoryBytes !== undefined) {
    resources.memory = { limit: limits.memoryBytes, swap: limits.memoryBytes + (limits.swapBytes ?? 0) };
  }
  if (limits.memoryRequestBytes !== undefined) {
    resources.memory = { ...resources.memory, reservation: limits.memoryRequestBytes };
  }
  if (limits.pids !== undefined) resources.pids = { limit: limits.pids };
  const blockIO = ociBlockIo(limits.io ?? []);
  if (blockIO) resources.blockIO = blockIO;
  return resources;
}

/** CFS quota in microseconds per {@link CPU_PERIOD_MICROSECONDS} for `millicores`. */
export function cpuQuotaMicroseconds(millicores: number): number {
  return Math.round((millicores * CPU_PERIOD_MICROSECONDS) / 1000);
}

/** v1 `cpu.shares` range (kernel MIN_SHARES / MAX_SHARES). */
const MIN_CPU_SHARES = 2;
const MAX_CPU_SHARES = 262_144;

/**
 * v1 `cpu.shares` for a CPU request: `millicores × 1024 / 1000`, rounded, within [2, 262144]; 1000m = 1024, the
 * kernel's default weight of a group (and of a nice-0 task). Kubernetes' MilliCPUToShares is the same rule.
 */
export function cpuSharesOf(millicores: number): number {
  return Math.min(MAX_CPU_SHARES, Math.max(MIN_CPU_SHARES, Math.round((millicores * 1024) / 1000)));
}

/**
 * v2 `cpu.weight` for a CPU request: `millicores / 10`, rounded, within [1, 10000] (cgroup-v2.rst "Weights"), so
 * 1000m = 100, the default weight, as 1000m = 1024 shares on v1; weights stay proportional to requests between
 * 10m and 100 cores. (runc's conversion of OCI `shares` maps 1024 to 39 instead: Warren writes the file itself.)
 */
export function cpuWeightOf(millicores: number): number {
  return Math.min(10_000, Math.max(1, Math.round(millicores / 10)));
}
