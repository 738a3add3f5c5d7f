// The runner's Prometheus metrics (prom-client): per-environment usage read from the backend at scrape time
// (no timers), the runner's reconcile queue and durations, and the Node process's default metrics.
import type { Environment, EnvironmentStats } from '@warren/api';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { EnvironmentBackend } from '../environment/index.js';

/** Labels of every per-environment series: the environment's id, name and class. */
export const ENVIRONMENT_LABELS = ['environment_id', 'environment', 'class'] as const;
type EnvironmentLabel = (typeof ENVIRONMENT_LABELS)[number];

/** Options of {@link RunnerMetrics}. */
export interface RunnerMetricsOptions {
  /** Where usage is read; a backend without `stats` yields no per-environment series. */
  backend: Pick<EnvironmentBackend, 'stats'>;
  /** The environments this runner reconciles (the controller's informer cache), read at each scrape. */
  environments: () => readonly Environment[];
  /** Keys waiting in the reconcile queue, read at each scrape. */
  queueDepth?: () => number;
  /** Add prom-client's default process and Node.js metrics (default true; tests turn them off for exact output). */
  defaultMetrics?: boolean;
  logger?: Logger;
}

/** One rendered scrape. */
export interface MetricsPage {
  /** `text/plain; version=0.0.4; charset=utf-8` (the Prometheus text exposition format). */
  contentType: string;
  body: string;
}

/** A counter whose value is a cumulative reading from the kernel, set (not incremented) at each scrape. */
type Reading = { metric: Counter<EnvironmentLabel> | Gauge<EnvironmentLabel>; value: (stats: EnvironmentStats) => number | undefined };

/**
 * The runner's registry. Per-environment series (labels {@link ENVIRONMENT_LABELS}), all read from
 * {@link EnvironmentBackend.stats} when scraped, in base units (seconds, bytes, cores):
 * `warren_environment_cpu_usage_seconds_total`, `_cpu_throttled_periods_total`, `_cpu_throttled_seconds_total`,
 * `_cpu_limit_cores`, `_memory_usage_bytes`, `_memory_limit_bytes`, `_memory_swap_usage_bytes`,
 * `_memory_swap_limit_bytes`, `_oom_kills_total`, `_io_read_bytes_total`, `_io_write_bytes_total`,
 * `_io_read_operations_total`, `_io_write_operations_total`, `_disk_used_bytes`, `_disk_limit_bytes`, `_pids`,
 * `_pids_limit`. A series is absent when the host does not expose the value (e.g. swap without swap accounting)
 * and disappears with the environment's container. Runner series: `warren_runner_environments{phase}`,
 * `warren_runner_reconcile_queue_depth`, `warren_runner_reconcile_duration_seconds{outcome}` (histogram),
 * `warren_runner_stats_errors_total`.
 */
export class RunnerMetrics {
  readonly registry = new Registry();
  private readonly options: RunnerMetricsOptions;
  private readonly logger: Logger;
  private readonly readings: Reading[];
  private readonly environmentsByPhase: Gauge<'phase'>;
  private readonly reconcileDuration: Histogram<'outcome'>;
  private readonly statsErrors: Counter;

  constructor(options: RunnerMetricsOptions) {
    this.options = options;
    this.logger = (options.logger ?? silentLogger).child({ component: 'metrics' });
    const registers = [this.registry];
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames: ENVIRONMENT_LABELS, registers });
    const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames: ENVIRONMENT_LABELS, registers });
    const prefix = 'warren_environment_';
    this.readings = [
      { metric: counter(`${prefix}cpu_usage_seconds_total`, 'CPU time used by the environment.'), value: (s) => s.cpuUsageSeconds },
      {
        metric: counter(`${prefix}cpu_throttled_periods_total`, 'CFS periods in which the environment was throttled (nr_throttled).'),
        value: (s) => s.cpuThrottledPeriods,
      },
      {
        metric: counter(`${prefix}cpu_throttled_seconds_total`, 'Time the environment spent throttled by its CPU limit.'),
        value: (s) => s.cpuThrottledSeconds,
      },
      {
        metric: gauge(`${prefix}cpu_limit_cores`, 'CPU limit (burst ceiling) in cores.'),
        value: (s) => (s.cpuLimitMillicores === undefined ? undefined : s.cpuLimitMillicores / 1000),
      },
      { metric: gauge(`${prefix}memory_usage_bytes`, 'Memory in use (RAM and page cache).'), value: (s) => s.memoryUsageBytes },
      { metric: gauge(`${prefix}memory_limit_bytes`, 'Hard memory limit.'), value: (s) => s.memoryLimitBytes },
      { metric: gauge(`${prefix}memory_swap_usage_bytes`, 'Swap in use.'), value: (s) => s.swapUsageBytes },
      { metric: gauge(`${prefix}memory_swap_limit_bytes`, 'Swap allowed.'), value: (s) => s.swapLimitBytes },
      {
        metric: counter(`${prefix}oom_kills_total`, 'Processes killed by the OOM killer inside the environment.'),
        value: (s) => s.oomKills,
      },
      { metric: counter(`${prefix}io_read_bytes_total`, 'Bytes read from block devices.'), value: (s) => s.ioReadBytes },
      { metric: counter(`${prefix}io_write_bytes_total`, 'Bytes written to block devices.'), value: (s) => s.ioWriteBytes },
      { metric: counter(`${prefix}io_read_operations_total`, 'Read operations on block devices.'), value: (s) => s.ioReadOperations },
      { metric: counter(`${prefix}io_write_operations_total`, 'Write operations on block devices.'), value: (s) => s.ioWriteOperations },
      {
        metric: gauge(`${prefix}disk_used_bytes`, 'Bytes of writable state (upper dir and workspace) in use.'),
        value: (s) => s.diskUsedBytes,
      },
      { metric: gauge(`${prefix}disk_limit_bytes`, 'Disk quota of the writable state.'), value: (s) => s.diskLimitBytes },
      { metric: gauge(`${prefix}pids`, 'Tasks (processes and threads).'), value: (s) => s.pids },
      { metric: gauge(`${prefix}pids_limit`, 'Most tasks allowed.'), value: (s) => s.pidsLimit },
    ];
    this.environmentsByPhase = new Gauge({
      name: 'warren_runner_environments',
      help: 'Environments assigned to this runner, by phase.',
      labelNames: ['phase'],
      registers,
    });
    const queueDepth = options.queueDepth;
    new Gauge({
      name: 'warren_runner_reconcile_queue_depth',
      help: 'Environments waiting to be reconciled.',
      registers,
      collect() {
        if (queueDepth) this.set(queueDepth());
      },
    });
    this.reconcileDuration = new Histogram({
      name: 'warren_runner_reconcile_duration_seconds',
      help: 'Duration of one reconcile of one environment, by outcome (success or error).',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers,
    });
    this.statsErrors = new Counter({
      name: 'warren_runner_stats_errors_total',
      help: 'Failures to read an environment’s usage during a scrape (the environment is left out of that scrape).',
      registers,
    });
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** Records one reconcile (the work queue's `onProcessed` hook). */
  observeReconcile(durationMs: number, outcome: 'success' | 'error'): void {
    this.reconcileDuration.observe({ outcome }, durationMs / 1000);
  }

  /** Reads every environment's usage now and renders the whole registry in the text exposition format. */
  async render(): Promise<MetricsPage> {
    const environments = this.options.environments();
    const samples = await Promise.all(
      environments.map(async (environment) => {
        try {
          return { environment, stats: await this.options.backend.stats?.(environment.metadata.id) };
        } catch (error) {
          this.statsErrors.inc();
          this.logger.debug({ environmentId: environment.metadata.id, error: errorMessage(error) }, 'reading environment stats failed');
          return { environment, stats: undefined };
        }
      }),
    );
    // Reset, then set everything in one synchronous step: series of environments gone since the last scrape vanish.
    for (const { metric } of this.readings) metric.reset();
    for (const { environment, stats } of samples) {
      if (!stats) continue;
      const labels = {
        environment_id: environment.metadata.id,
        environment: environment.metadata.name,
        class: environment.spec.className,
      };
      for (const { metric, value } of this.readings) {
        const reading = value(stats);
        if (reading === undefined) continue;
        if (metric instanceof Counter) metric.inc(labels, reading);
        else metric.set(labels, reading);
      }
    }
    this.environmentsByPhase.reset();
    for (const environment of environments) this.environmentsByPhase.inc({ phase: environment.status.phase });
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
