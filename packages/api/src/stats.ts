// Usage of one environment as its runner reads it (cgroup counters, disk): the body of the runner's
// `GET {endpoint}/v1/environments/{id}/stats` (authorised by an access grant like exec and logs) and what
// `warren env top` shows. Counters are cumulative since the environment's container started; a client
// computes rates (CPU %, IO bytes/s) from two samples and their `sampleTime`.
import { z } from 'zod';

const count = z.number().int().nonnegative();

/** One sample of an environment's usage; a field is absent when the host does not expose it. */
export const EnvironmentStatsSchema = z.object({
  environmentId: z.string(),
  /** When the runner read the counters (RFC 3339, millisecond precision). */
  sampleTime: z.string(),
  /** Total CPU time used, seconds (cgroup v1 cpuacct.usage, v2 cpu.stat usage_usec). */
  cpuUsageSeconds: z.number().nonnegative().optional(),
  /** CPU limit (burst ceiling) in millicores, from the CFS quota; absent when unlimited. */
  cpuLimitMillicores: count.optional(),
  /** CFS periods in which the environment was throttled (cpu.stat nr_throttled). */
  cpuThrottledPeriods: count.optional(),
  /** Time spent throttled, seconds (cpu.stat throttled_time / throttled_usec). */
  cpuThrottledSeconds: z.number().nonnegative().optional(),
  /** Memory in use (RAM + page cache), bytes. */
  memoryUsageBytes: count.optional(),
  /** Hard memory limit, bytes; absent when unlimited. */
  memoryLimitBytes: count.optional(),
  /** Swap in use, bytes (v1 memsw usage minus memory usage; v2 memory.swap.current). */
  swapUsageBytes: count.optional(),
  /** Swap allowed, bytes; absent when unlimited or not accounted. */
  swapLimitBytes: count.optional(),
  /** Processes killed by the OOM killer inside the environment. */
  oomKills: count.optional(),
  /** Bytes read from / written to block devices (v1 blkio.throttle.io_service_bytes, v2 io.stat rbytes/wbytes). */
  ioReadBytes: count.optional(),
  ioWriteBytes: count.optional(),
  /** Read / write operations on block devices (v1 blkio.throttle.io_serviced, v2 io.stat rios/wios). */
  ioReadOperations: count.optional(),
  ioWriteOperations: count.optional(),
  /** Bytes of the environment's writable state (upper dir + workspace) in use and its quota, when the runner measures them. */
  diskUsedBytes: count.optional(),
  diskLimitBytes: count.optional(),
  /** Tasks (processes + threads) and their limit. */
  pids: count.optional(),
  pidsLimit: count.optional(),
});
export type EnvironmentStats = z.infer<typeof EnvironmentStatsSchema>;
