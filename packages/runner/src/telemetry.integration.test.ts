// Telemetry on real cgroups: server + runner (Linux backend) + fixtures through e2e/harness. With one running
// environment, the runner's /metrics (metrics token from runner.json) carries its CPU, memory, pids and IO series
// with id, name and class labels, its disk quota's usage, and direct writes inside show in its IO counter; the access API's stats endpoint
// answers a user's access grant and refuses a request without one or for another environment.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, startHarness, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment, fetchStats } from './access/index.js';

/** Own slot range, apart from the other suites (see their SLOT_OFFSETs): 15200..15399. */
const SLOT_OFFSET = 15_200 + (process.pid % 50) * 4;
const METRICS_TOKEN = 'metrics-integration-token-0123456789';

/** The value of the series `name` whose label set contains `labels`; NaN when absent. */
function seriesValue(body: string, name: string, labels: string): number {
  const line = body.split('\n').find((candidate) => candidate.startsWith(`${name}{`) && candidate.includes(labels));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('runner telemetry on real cgroups', () => {
  let harness: HarnessWithFixtures;

  beforeAll(async () => {
    harness = await startHarness({
      name: 'telemetry',
      fixtures: true,
      config: { slotOffset: SLOT_OFFSET, maxEnvironments: 4, metrics: { token: METRICS_TOKEN } },
    });
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('scrapes the series of a running environment and serves its stats to a grant only', async () => {
    const { fixtures, admin, runner } = harness;
    const repo = await fixtures.git.createRepo(`acme/telemetry${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    await admin.createEnvironmentClass({
      metadata: { name: 'telemetry' },
      spec: { cpuMillicores: 1000, memoryBytes: 512 * 1024 * 1024, swapBytes: 0, pids: 1024, diskBytes: 256 * 1024 * 1024 },
    });
    const created = await admin.createEnvironment({
      metadata: { name: 'telemetry' },
      spec: { className: 'telemetry', source: { git: { url: repo.url } } },
    });
    const id = created.metadata.id;
    await waitForPhase(admin, id, 'Running');
    const environmentClass = await admin.get('EnvironmentClass', created.spec.className);

    const scrape = async (token?: string) =>
      fetch(`${runner.accessUrl}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    expect((await scrape()).status).toBe(401);
    const grant = await admin.createAccessGrant(id);
    expect((await scrape(grant.token)).status).toBe(401);

    const scraped = await scrape(METRICS_TOKEN);
    expect(scraped.status).toBe(200);
    const before = await scraped.text();
    const labels = `environment_id="${id}",environment="telemetry",class="${created.spec.className}"`;
    expect(seriesValue(before, 'warren_environment_cpu_usage_seconds_total', labels)).toBeGreaterThan(0);
    expect(seriesValue(before, 'warren_environment_memory_usage_bytes', labels)).toBeGreaterThan(0);
    expect(seriesValue(before, 'warren_environment_memory_limit_bytes', labels)).toBe(environmentClass.spec.memoryBytes);
    expect(seriesValue(before, 'warren_environment_pids', labels)).toBeGreaterThanOrEqual(1);
    expect(seriesValue(before, 'warren_environment_pids_limit', labels)).toBe(1024);
    expect(seriesValue(before, 'warren_environment_cpu_limit_cores', labels)).toBeGreaterThan(0);
    expect(seriesValue(before, 'warren_environment_disk_used_bytes', labels)).toBeGreaterThan(0);
    const diskLimit = seriesValue(before, 'warren_environment_disk_limit_bytes', labels);
    expect(diskLimit).toBeGreaterThan(128 * 1024 * 1024);
    expect(diskLimit).toBeLessThanOrEqual(256 * 1024 * 1024);
    expect(seriesValue(before, 'warren_environment_cpu_throttled_periods_total', labels)).toBeGreaterThanOrEqual(0);
    const writtenBefore = seriesValue(before, 'warren_environment_io_write_bytes_total', labels);
    expect(writtenBefore).toBeGreaterThanOrEqual(0);
    expect(before).toMatch(/^warren_runner_environments\{phase="Running"\} 1$/m);
    expect(before).toMatch(/^warren_runner_reconcile_duration_seconds_count\{outcome="success"\} [1-9]/m);
    expect(before).toMatch(/^process_resident_memory_bytes \d/m);

    // 8 MiB of direct (uncached) writes inside: block IO in the environment's own cgroup.
    const discard = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const code = await execInEnvironment(
      await admin.createAccessGrant(id),
      ['sh', '-c', 'dd if=/dev/zero of="$HOME/telemetry.bin" bs=1M count=8 oflag=direct 2>/dev/null && rm "$HOME/telemetry.bin"'],
      { stdout: discard, stderr: discard },
    );
    expect(code).toBe(0);
    const after = await (await scrape(METRICS_TOKEN)).text();
    expect(seriesValue(after, 'warren_environment_io_write_bytes_total', labels) - writtenBefore).toBeGreaterThanOrEqual(8 * 1024 * 1024);

    const stats = await fetchStats(grant);
    expect(stats.environmentId).toBe(id);
    expect(stats.cpuUsageSeconds).toBeGreaterThan(0);
    expect(stats.memoryLimitBytes).toBe(environmentClass.spec.memoryBytes);
    expect(stats.ioWriteBytes).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    expect((await fetch(`${grant.endpoint}/v1/environments/${id}/stats`)).status).toBe(401);
    const otherEnvironment = await fetch(`${grant.endpoint}/v1/environments/env-other/stats`, {
      headers: { authorization: `Bearer ${grant.token}` },
    });
    expect(otherEnvironment.status).toBe(403);
  });
});
