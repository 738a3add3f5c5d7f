// OOM kills inside a running environment, for observe: its cgroup's `oom_kill` counter (v1 memory.oom_control, v2
// memory.events; the group is made at each start, so the count is since that start) and which process the kernel
// killed last (its log, read only when the counter moved).
import { errorMessage } from '@warren/base';
import type { ObservedEnvironment } from '../environment/index.js';
import { CgroupError, lastOomKillIn, parseOomKills, readKernelLog } from '../linux/index.js';
import type { BackendContext } from './context.js';

/** What was last found per environment and start, so the kernel log is read once per new kill, not per observe. */
interface Seen {
  startId: string;
  oomKills: number;
  limitBytes?: number;
  lastKill?: { pid: number; process: string };
}

// Keyed by the backend's context: one cache per backend, dropped with it. A cache only: after a runner restart the
// log is read again (a record the kernel already overwrote then gives "a process").
const seenByBackend = new WeakMap<BackendContext, Map<string, Seen>>();

/** Options of {@link observeOomKills} (tests pass a fake kernel log). */
export interface ObserveOomOptions {
  /** Reads the kernel log's text; default /dev/kmsg. */
  readLog?: () => Promise<string>;
}

/**
 * The OOM kills in the running container `startId` of environment `environmentId`.
 * @returns undefined when its cgroup has no memory counter (no cgroup, no memory controller, a kernel older than
 *   4.13 without `oom_kill`); otherwise the count and, once it is above 0, the last killed process when the kernel
 *   log still names it. Never throws: a cgroup or log that cannot be read is logged at debug and gives less.
 */
export async function observeOomKills(
  backend: BackendContext,
  environmentId: string,
  startId: string,
  options: ObserveOomOptions = {},
): Promise<ObservedEnvironment['memory']> {
  let oomKills: number | undefined;
  let limitBytes: number | undefined;
  try {
    ({ oomKills, memoryLimitBytes: limitBytes } = await backend.cgroups.stats(environmentId));
  } catch (error) {
    if (!(error instanceof CgroupError)) throw error;
    backend.logger.debug({ environmentId, error: errorMessage(error) }, 'oom counter not readable');
  }
  if (oomKills === undefined) return undefined;
  let seen = seenByBackend.get(backend);
  if (!seen) seenByBackend.set(backend, (seen = new Map<string, Seen>()));
  const previous = seen.get(environmentId);
  if (previous?.startId === startId && previous.oomKills === oomKills && previous.limitBytes === limitBytes) return memory(previous);
  const next: Seen = { startId, oomKills, ...(limitBytes === undefined ? {} : { limitBytes }) };
  // The same kill counted again (the limit changed) keeps its process.
  if (previous?.startId === startId && previous.oomKills === oomKills && previous.lastKill) next.lastKill = previous.lastKill;
  if (oomKills > 0 && !next.lastKill) {
    const path = backend.cgroups.cgroupsPath(environmentId);
    try {
      const kill = lastOomKillIn(parseOomKills(await (options.readLog ?? (() => readKernelLog()))()), path);
      if (kill) next.lastKill = { pid: kill.pid, process: kill.process };
    } catch (error) {
      backend.logger.debug({ environmentId, error: errorMessage(error) }, 'kernel log not readable');
    }
  }
  seen.set(environmentId, next);
  return memory(next);
}

function memory(seen: Seen): NonNullable<ObservedEnvironment['memory']> {
  return {
    oomKills: seen.oomKills,
    ...(seen.limitBytes === undefined ? {} : { limitBytes: seen.limitBytes }),
    ...(seen.lastKill ? { lastOomKill: { ...seen.lastKill } } : {}),
  };
}
