// Unit tests of the burst controller's cgroup pieces (quota, CPU counters, interactive sub-group) through
// CgroupManager on fake v1 and v2 cgroupfs trees made of plain directories.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { INTERACTIVE_CPU_SHARES, INTERACTIVE_CPU_WEIGHT, parseV2Quota } from './cgroup-cpu.js';
import { CgroupError, CgroupManager } from './cgroups.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-cgroup-cpu-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const read = (path: string): Promise<string> => readFile(join(root, path), 'utf8').then((text) => text.trim());

/** A v1 group `warren/env1` as runc leaves it: separate cpu and cpuacct hierarchies (as on this host). */
async function fakeV1Group(files: { quota?: string; period?: string; usage?: string; stat?: string } = {}): Promise<void> {
  for (const controller of ['cpu', 'cpuacct', 'memory']) await mkdir(join(root, controller, 'warren', 'env1'), { recursive: true });
  const cpu = join(root, 'cpu', 'warren', 'env1');
  await writeFile(join(cpu, 'cpu.cfs_quota_us'), `${files.quota ?? '50000'}\n`);
  await writeFile(join(cpu, 'cpu.cfs_period_us'), `${files.period ?? '100000'}\n`);
  await writeFile(join(cpu, 'cpu.stat'), files.stat ?? 'nr_periods 120\nnr_throttled 7\nthrottled_time 345000000\n');
  await writeFile(join(root, 'cpuacct', 'warren', 'env1', 'cpuacct.usage'), `${files.usage ?? '987654321'}\n`);
}

/** A v2 group `warren/env1`, with `procs` in its cgroup.procs. */
async function fakeV2Group(procs = ''): Promise<void> {
  await writeFile(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
  const dir = join(root, 'warren', 'env1');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cpu.max'), '50000 100000\n');
  await writeFile(
    join(dir, 'cpu.stat'),
    'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 9\nnr_throttled 3\nthrottled_usec 2500\n',
  );
  await writeFile(join(dir, 'cgroup.procs'), procs);
  await writeFile(join(dir, 'cgroup.subtree_control'), '');
}

describe('CgroupManager CPU sample and quota (v1)', () => {
  it('reads usage from cpuacct, throttling from cpu.stat and the quota in millicores', async () => {
    await fakeV1Group();
    const cgroups = new CgroupManager({ version: 'v1', root });
    expect(await cgroups.cpuSample('env1')).toEqual({
      usageNanoseconds: 987_654_321,
      throttledPeriods: 7,
      throttledNanoseconds: 345_000_000,
      quotaMillicores: 500,
    });
  });

  it('reports an unlimited quota as undefined and a missing group as undefined', async () => {
    await fakeV1Group({ quota: '-1' });
    const cgroups = new CgroupManager({ version: 'v1', root });
    expect((await cgroups.cpuSample('env1'))?.quotaMillicores).toBeUndefined();
    expect(await cgroups.cpuSample('other')).toBeUndefined();
  });

  it('writes the quota in the group period', async () => {
    await fakeV1Group({ period: '50000' });
    const cgroups = new CgroupManager({ version: 'v1', root });
    await cgroups.setCpuQuota('env1', 1500);
    expect(await read('cpu/warren/env1/cpu.cfs_quota_us')).toBe('75000');
    expect(await read('cpu/warren/env1/cpu.cfs_period_us')).toBe('50000');
  });

  it('refuses a quota under 10 millicores and a missing group', async () => {
    await fakeV1Group();
    const cgroups = new CgroupManager({ version: 'v1', root });
    await expect(cgroups.setCpuQuota('env1', 5)).rejects.toThrow(CgroupError);
    await expect(cgroups.setCpuQuota('other', 500)).rejects.toThrow(CgroupError);
  });
});

describe('CgroupManager CPU sample and quota (v2)', () => {
  it('reads usage and throttling from cpu.stat in microseconds and the quota from cpu.max', async () => {
    await fakeV2Group();
    const cgroups = new CgroupManager({ version: 'v2', root });
    expect(await cgroups.cpuSample('env1')).toEqual({
      usageNanoseconds: 1_500_000,
      throttledPeriods: 3,
      throttledNanoseconds: 2_500_000,
      quotaMillicores: 500,
    });
  });

  it('writes cpu.max keeping the period', async () => {
    await fakeV2Group();
    await writeFile(join(root, 'warren', 'env1', 'cpu.max'), 'max 20000\n');
    const cgroups = new CgroupManager({ version: 'v2', root });
    await cgroups.setCpuQuota('env1', 250);
    expect(await read('warren/env1/cpu.max')).toBe('5000 20000');
  });

  it('parses cpu.max', () => {
    expect(parseV2Quota('max 100000')).toBeUndefined();
    expect(parseV2Quota('200000 100000\n')).toBe(2000);
    expect(parseV2Quota('garbage')).toBeUndefined();
  });
});

describe('CgroupManager interactive sub-group', () => {
  it('v1: makes <cpu>/warren/<name>/interactive with higher cpu.shares and moves a pid there only in the cpu hierarchy', async () => {
    await fakeV1Group();
    const cgroups = new CgroupManager({ version: 'v1', root });
    expect(await cgroups.addInteractiveProcess('env1', 4242)).toBe(true);
    expect(await read('cpu/warren/env1/interactive/cpu.shares')).toBe(String(INTERACTIVE_CPU_SHARES));
    expect(await read('cpu/warren/env1/interactive/cgroup.procs')).toBe('4242');
    await expect(read('memory/warren/env1/interactive/cgroup.procs')).rejects.toThrow();
    await expect(read('cpuacct/warren/env1/interactive/cgroup.procs')).rejects.toThrow();
  });

  it('v1: remove() takes the interactive sub-group away before the group', async () => {
    await fakeV1Group();
    const cgroups = new CgroupManager({ version: 'v1', root });
    const made = await cgroups.ensureInteractiveGroup('env1');
    expect(made.group).toBeDefined();
    // On cgroupfs the control files go with their directory; here they are plain files.
    await rm(join(root, 'cpu', 'warren', 'env1'), { recursive: true });
    await mkdir(join(root, 'cpu', 'warren', 'env1', 'interactive'), { recursive: true });
    await rm(join(root, 'cpuacct', 'warren', 'env1', 'cpuacct.usage'));
    expect(await cgroups.remove('env1')).toBe(true);
    expect(await cgroups.list()).toEqual([]);
  });

  it('v2: refuses while the container runs in the environment group itself (no-internal-process rule)', async () => {
    await fakeV2Group('123\n');
    const cgroups = new CgroupManager({ version: 'v2', root });
    const made = await cgroups.ensureInteractiveGroup('env1');
    expect(made.group).toBeUndefined();
    expect(made).toMatchObject({ reason: expect.stringContaining('no-internal') as unknown });
    expect(await cgroups.addInteractiveProcess('env1', 4242)).toBe(false);
  });

  it('v2: with no processes of its own, enables +cpu for children and makes a weighted leaf', async () => {
    await fakeV2Group('');
    const cgroups = new CgroupManager({ version: 'v2', root });
    expect(await cgroups.addInteractiveProcess('env1', 4242)).toBe(true);
    expect(await read('warren/env1/cgroup.subtree_control')).toBe('+cpu');
    expect(await read('warren/env1/interactive/cpu.weight')).toBe(String(INTERACTIVE_CPU_WEIGHT));
    expect(await read('warren/env1/interactive/cgroup.procs')).toBe('4242');
  });

  it('fails with CgroupError when the environment group does not exist', async () => {
    await fakeV1Group();
    const cgroups = new CgroupManager({ version: 'v1', root });
    await expect(cgroups.addInteractiveProcess('other', 1)).rejects.toThrow(CgroupError);
  });
});
