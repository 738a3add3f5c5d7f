// `warren env top [<env>]`: CPU, memory, IO, disk and throttling of environments, read from their runners' access
// API (`GET /v1/environments/{id}/stats`) with the user's own access grants, so a user sees only what they may exec in.
import type { Command } from 'commander';
import type { AccessGrant, Environment, EnvironmentStats, WarrenClient } from '@warren/api';
import { ApiError } from '@warren/api';
import { errorMessage, sleep } from '@warren/base';
import { fetchStats } from '@warren/runner/access-client';
import type { CommandContext } from '../command-context.js';
import { type Column, type OutputFormat, formatBytes, render } from '../output.js';

/** Seconds between the two samples of a one-shot `env top` (rates need two). */
export const ONE_SHOT_INTERVAL_MS = 1_000;
/** Seconds between refreshes of `env top --watch`. */
export const WATCH_INTERVAL_MS = 2_000;
/** A grant is renewed this long before it expires. */
const GRANT_MARGIN_MS = 30_000;

/** One line of `env top`: rates between two samples and the latest levels; a field is absent when unknown. */
export interface TopRow {
  name: string;
  id: string;
  /** CPU used over the interval, 100 = one core (as top(1) and docker stats count). */
  cpuPercent?: number;
  cpuLimitMillicores?: number;
  /** Time throttled by the CPU limit per second of the interval, in percent (100 = one core held back all along). */
  throttledPercent?: number;
  memoryUsageBytes?: number;
  memoryLimitBytes?: number;
  swapUsageBytes?: number;
  ioReadBytesPerSecond?: number;
  ioWriteBytesPerSecond?: number;
  diskUsedBytes?: number;
  diskLimitBytes?: number;
  pids?: number;
  /** Why there are no figures (e.g. the environment is not running). */
  error?: string;
}

/**
 * Computes the row of `environment` from two samples of its stats (`previous` earlier than `current`). Counters
 * that went backwards (the container restarted between the samples) give no rate.
 */
export function topRow(environment: Environment, previous: EnvironmentStats | undefined, current: EnvironmentStats): TopRow {
  const seconds = previous ? (Date.parse(current.sampleTime) - Date.parse(previous.sampleTime)) / 1000 : 0;
  const rate = (before: number | undefined, after: number | undefined): number | undefined =>
    seconds > 0 && before !== undefined && after !== undefined && after >= before ? (after - before) / seconds : undefined;
  const row: TopRow = { name: environment.metadata.name, id: environment.metadata.id };
  const cpu = rate(previous?.cpuUsageSeconds, current.cpuUsageSeconds);
  if (cpu !== undefined) row.cpuPercent = cpu * 100;
  const throttled = rate(previous?.cpuThrottledSeconds, current.cpuThrottledSeconds);
  if (throttled !== undefined) row.throttledPercent = throttled * 100;
  const read = rate(previous?.ioReadBytes, current.ioReadBytes);
  if (read !== undefined) row.ioReadBytesPerSecond = read;
  const write = rate(previous?.ioWriteBytes, current.ioWriteBytes);
  if (write !== undefined) row.ioWriteBytesPerSecond = write;
  const levels = [
    'cpuLimitMillicores',
    'memoryUsageBytes',
    'memoryLimitBytes',
    'swapUsageBytes',
    'diskUsedBytes',
    'diskLimitBytes',
    'pids',
  ] as const;
  for (const key of levels) if (current[key] !== undefined) row[key] = current[key];
  return row;
}

const dash = '-';
const bytesOr = (value: number | undefined) => (value === undefined ? dash : formatBytes(Math.round(value)));
const usedOf = (used: number | undefined, limit: number | undefined) =>
  `${bytesOr(used)} / ${limit === undefined ? 'max' : bytesOr(limit)}`;

/** Table columns of `env top`. */
export const topColumns: Column<TopRow>[] = [
  { header: 'NAME', value: (row) => row.name },
  { header: 'CPU%', value: (row) => (row.cpuPercent === undefined ? dash : row.cpuPercent.toFixed(1)) },
  { header: 'CPU LIMIT', value: (row) => (row.cpuLimitMillicores === undefined ? 'max' : `${row.cpuLimitMillicores}m`) },
  { header: 'THROTTLED%', value: (row) => (row.throttledPercent === undefined ? dash : row.throttledPercent.toFixed(1)) },
  { header: 'MEMORY', value: (row) => (row.error ? dash : usedOf(row.memoryUsageBytes, row.memoryLimitBytes)) },
  { header: 'SWAP', value: (row) => bytesOr(row.swapUsageBytes) },
  {
    header: 'IO READ/WRITE',
    value: (row) =>
      row.ioReadBytesPerSecond === undefined && row.ioWriteBytesPerSecond === undefined
        ? dash
        : `${bytesOr(row.ioReadBytesPerSecond)}/s / ${bytesOr(row.ioWriteBytesPerSecond)}/s`,
  },
  { header: 'DISK', value: (row) => (row.diskUsedBytes === undefined ? dash : usedOf(row.diskUsedBytes, row.diskLimitBytes)) },
  { header: 'PIDS', value: (row) => (row.pids === undefined ? dash : String(row.pids)) },
  { header: 'STATUS', value: (row) => row.error ?? 'ok' },
];

/** Renders rows as a table, or (json/yaml) as they are. */
export function renderTop(rows: TopRow[], format: OutputFormat): string {
  return render(rows, format, topColumns);
}

/** Samples the stats of a set of environments, keeping one access grant per environment until it nearly expires. */
class StatsSampler {
  private readonly grants = new Map<string, AccessGrant>();

  constructor(private readonly client: WarrenClient) {}

  /** @returns the environment's stats, or the message of why they cannot be read. */
  async sample(environment: Environment): Promise<EnvironmentStats | string> {
    const id = environment.metadata.id;
    try {
      let grant = this.grants.get(id);
      if (!grant || Date.parse(grant.expiresTime) - Date.now() < GRANT_MARGIN_MS) {
        grant = await this.client.createAccessGrant(id);
        this.grants.set(id, grant);
      }
      return await fetchStats(grant, {});
    } catch (error) {
      if (error instanceof ApiError && error.reason === 'EnvironmentNotRunning') return 'not running';
      return errorMessage(error);
    }
  }
}

/** Registers `env top` on the `env` command group. */
export function registerTopCommand(env: Command, context: CommandContext): void {
  env
    .command('top')
    .description('show CPU, memory, IO, disk and throttling of running environments (or of one), from their runners')
    .argument('[env]', 'environment name or id (default: every running environment you can see)')
    .option('-w, --watch', `refresh every ${WATCH_INTERVAL_MS / 1000} s until interrupted`)
    .action(async (idOrName: string | undefined, options: { watch?: boolean }) => {
      const client = await context.client();
      const environments = idOrName
        ? [await client.get('Environment', idOrName)]
        : (await client.list('Environment')).items.filter((environment) => environment.status.phase === 'Running');
      if (environments.length === 0) context.stderr.write('no running environments\n');
      const sampler = new StatsSampler(client);
      const sampleAll = () => Promise.all(environments.map((environment) => sampler.sample(environment)));
      const rows = (before: Array<EnvironmentStats | string>, after: Array<EnvironmentStats | string>) =>
        environments.map((environment, index) => {
          const current = after[index]!;
          const previous = before[index];
          if (typeof current === 'string') return { name: environment.metadata.name, id: environment.metadata.id, error: current };
          return topRow(environment, typeof previous === 'string' ? undefined : previous, current);
        });
      const format = context.options().output;
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      try {
        let previous = await sampleAll();
        if (idOrName && typeof previous[0] === 'string' && !options.watch) throw new Error(`environment ${idOrName}: ${previous[0]}`);
        for (;;) {
          const waited = await sleep(options.watch ? WATCH_INTERVAL_MS : ONE_SHOT_INTERVAL_MS, stop.signal).then(
            () => true,
            () => false,
          );
          if (!waited) return;
          const current = await sampleAll();
          const page = renderTop(rows(previous, current), format);
          const clear = options.watch && format === 'table' && 'isTTY' in context.stdout && context.stdout.isTTY ? '\x1b[H\x1b[2J' : '';
          context.stdout.write(clear + page);
          if (!options.watch) return;
          previous = current;
        }
      } finally {
        process.off('SIGINT', onSignal);
      }
    });
}
