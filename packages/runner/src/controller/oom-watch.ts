// A cheap periodic look at each running environment's OOM-kill counter, so that a kill reaches status within
// seconds instead of at the next resync: a counter that moved queues the environment, whose reconcile then
// observes the kill and writes the OOMKilled condition (docs/design/0010-requests-and-limits.md "Memory and OOM").
import type { Environment } from '@warren/api';
import { type Logger, errorMessage, silentLogger, sleep } from '@warren/base';
import type { EnvironmentBackend } from '../environment/index.js';

/** Milliseconds between two looks (one small cgroup file per running environment; no status write of its own). */
export const OOM_WATCH_INTERVAL_MS = 5000;

/** Options of {@link watchOomKills}. */
export interface OomWatchOptions {
  /** Reads an environment's counters (`oomKills` is used); the Linux backend's stats. */
  stats: NonNullable<EnvironmentBackend['stats']>;
  /** The environments this runner reconciles (the informer's cache). */
  environments: () => Environment[];
  /** Queues an environment for a reconcile. */
  enqueue: (environmentId: string) => void;
  signal: AbortSignal;
  intervalMs?: number;
  logger?: Logger;
}

/**
 * Loops until `signal` aborts: every `intervalMs`, reads the OOM-kill counter of each environment whose phase is
 * Running and queues those whose counter differs from the last look (a first look queues a counter above 0, so a
 * runner restart catches kills it missed). Errors of one environment are logged at debug and skipped.
 * @returns when `signal` aborts.
 */
export async function watchOomKills(options: OomWatchOptions): Promise<void> {
  const logger = (options.logger ?? silentLogger).child({ component: 'oom-watch' });
  const seen = new Map<string, number>();
  const interval = options.intervalMs ?? OOM_WATCH_INTERVAL_MS;
  while (!options.signal.aborted) {
    const running = options.environments().filter((environment) => environment.status.phase === 'Running');
    const ids = new Set(running.map((environment) => environment.metadata.id));
    for (const id of seen.keys()) if (!ids.has(id)) seen.delete(id);
    for (const id of ids) {
      try {
        const oomKills = (await options.stats(id))?.oomKills;
        if (oomKills === undefined) continue;
        const previous = seen.get(id);
        seen.set(id, oomKills);
        if (previous === undefined ? oomKills > 0 : previous !== oomKills) {
          logger.debug({ environmentId: id, oomKills }, 'oom kill counter moved');
          options.enqueue(id);
        }
      } catch (error) {
        logger.debug({ environmentId: id, error: errorMessage(error) }, 'oom kill counter not readable');
      }
    }
    await sleep(interval, options.signal).catch(() => {});
  }
}
