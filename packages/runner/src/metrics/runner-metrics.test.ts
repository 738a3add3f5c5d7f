// RunnerMetrics: per-environment series rendered from fake stats (names, labels, base units), series of stopped
// environments gone at the next scrape, stats failures counted, reconcile histogram and queue depth.
/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
import type { Environment, EnvironmentPhase, EnvironmentStats } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { RunnerMetrics } from './runner-metrics.js';

function environment(id: string, name: string, phase: EnvironmentPhase, className = 'default'): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name, generation: 1, resourceVersion: '1', createdTime: new Date(0).toISOString(), labels: {}, ownerId: 'u1' },
    spec: {
      desiredPhase: 'Running',
      source: { git: { url: 'https://example.test/repo.git' } },
      devcontainer: {},
      className,
      ports: [],
      timeouts: { inactivitySeconds: 3600 },
    },
    status: { phase, observedGeneration: 1, conditions: [], ports: [], runnerId: 'r1' },
  };
}

const fullStats: Omit<EnvironmentStats, 'environmentId'> = {
  sampleTime: new Date(0).toISOString(),
  cpuUsageSeconds: 12.5,
  cpuLimitMillicores: 1500,
  cpuThrottledPeriods: 7,
  cpuThrottledSeconds: 0.25,
  memoryUsageBytes: 1000,
  memoryLimitBytes: 2000,
  swapUsageBytes: 10,
  swapLimitBytes: 500,
  oomKills: 1,
  ioReadBytes: 4096,
  ioWriteBytes: 8192,
  ioReadOperations: 1,
  ioWriteOperations: 2,
  diskUsedBytes: 300,
  diskLimitBytes: 900,
  pids: 4,
  pidsLimit: 100,
};

/** The value of the one series named `name` whose labels contain `labels` (a `k="v",...` fragment); NaN when absent. */
function value(body: string, name: string, labels = ''): number {
  const line = body.split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(labels));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('RunnerMetrics', () => {
  it('renders every reading of a running environment in base units with id, name and class labels', async () => {
    const environments = [environment('e1', 'alpha', 'Running', 'large'), environment('e2', 'beta', 'Stopped')];
    const metrics = new RunnerMetrics({
      backend: { stats: async (id) => (id === 'e1' ? { environmentId: id, ...fullStats } : undefined) },
      environments: () => environments,
      queueDepth: () => 3,
      defaultMetrics: false,
    });
    const page = await metrics.render();
    expect(page.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const labels = 'environment_id="e1",environment="alpha",class="large"';
    expect(page.body).toContain(`warren_environment_cpu_usage_seconds_total{${labels}} 12.5`);
    const expected: Record<string, number> = {
      warren_environment_cpu_usage_seconds_total: 12.5,
      warren_environment_cpu_throttled_periods_total: 7,
      warren_environment_cpu_throttled_seconds_total: 0.25,
      warren_environment_cpu_limit_cores: 1.5,
      warren_environment_memory_usage_bytes: 1000,
      warren_environment_memory_limit_bytes: 2000,
      warren_environment_memory_swap_usage_bytes: 10,
      warren_environment_memory_swap_limit_bytes: 500,
      warren_environment_oom_kills_total: 1,
      warren_environment_io_read_bytes_total: 4096,
      warren_environment_io_write_bytes_total: 8192,
      warren_environment_io_read_operations_total: 1,
      warren_environment_io_write_operations_total: 2,
      warren_environment_disk_used_bytes: 300,
      warren_environment_disk_limit_bytes: 900,
      warren_environment_pids: 4,
      warren_environment_pids_limit: 100,
    };
    for (const [name, expectedValue] of Object.entries(expected))
      expect([name, value(page.body, name, labels)]).toEqual([name, expectedValue]);
    expect(page.body).toContain('# TYPE warren_environment_cpu_usage_seconds_total counter');
    expect(page.body).toContain('# TYPE warren_environment_memory_usage_bytes gauge');
    expect(page.body).not.toContain('environment_id="e2"');
    expect(value(page.body, 'warren_runner_environments', 'phase="Running"')).toBe(1);
    expect(value(page.body, 'warren_runner_environments', 'phase="Stopped"')).toBe(1);
    expect(page.body).toContain('warren_runner_reconcile_queue_depth 3');
  });

  it('leaves out values the host does not expose and drops the series of an environment that stopped', async () => {
    let running = true;
    const metrics = new RunnerMetrics({
      backend: {
        stats: async (id) => (running ? { environmentId: id, sampleTime: new Date(0).toISOString(), memoryUsageBytes: 5 } : undefined),
      },
      environments: () => [environment('e1', 'alpha', 'Running')],
      defaultMetrics: false,
    });
    const first = (await metrics.render()).body;
    expect(value(first, 'warren_environment_memory_usage_bytes', 'environment_id="e1"')).toBe(5);
    expect(first).not.toMatch(/^warren_environment_memory_swap_usage_bytes\{/m);
    running = false;
    const second = (await metrics.render()).body;
    expect(second).not.toContain('environment_id="e1"');
  });

  it('counts a failed stats read and still renders the other environments', async () => {
    const metrics = new RunnerMetrics({
      backend: {
        stats: async (id) => {
          if (id === 'bad') throw new Error('cgroup vanished');
          return { environmentId: id, sampleTime: new Date(0).toISOString(), pids: 2 };
        },
      },
      environments: () => [environment('bad', 'bad', 'Running'), environment('good', 'good', 'Running')],
      defaultMetrics: false,
    });
    const body = (await metrics.render()).body;
    expect(value(body, 'warren_environment_pids', 'environment_id="good"')).toBe(2);
    expect(body).toContain('warren_runner_stats_errors_total 1');
  });

  it('records reconcile durations in seconds by outcome, and adds the process metrics by default', async () => {
    const metrics = new RunnerMetrics({ backend: {}, environments: () => [] });
    metrics.observeReconcile(20, 'success');
    metrics.observeReconcile(2_000, 'error');
    const body = (await metrics.render()).body;
    expect(value(body, 'warren_runner_reconcile_duration_seconds_count', 'outcome="success"')).toBe(1);
    expect(value(body, 'warren_runner_reconcile_duration_seconds_sum', 'outcome="error"')).toBe(2);
    expect(value(body, 'warren_runner_reconcile_duration_seconds_bucket', 'le="0.05",outcome="success"')).toBe(1);
    expect(body).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(body).toMatch(/^nodejs_heap_size_used_bytes \d/m);
  });
});
