// Usage and limits read by CgroupManager.stats on fake v1 and v2 cgroupfs trees (IO bytes and operations, CPU
// limit, memory and swap limits and usage, pids limit), and the parsers of the multi-value files.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { millicoresOfQuota, v1BlkioTotals, v2IoStatTotals } from './cgroup-stats.js';
import { CgroupManager } from './cgroups.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-cgroup-stats-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes `files` (path relative to the fake root → content) creating directories. */
async function layFiles(files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

describe('CgroupManager.stats', () => {
  it('reads v1 usage and limits, IO summed over devices from the blkio throttle files', async () => {
    const group = 'warren/env-1';
    await layFiles({
      [`cpu/${group}/cpu.stat`]: 'nr_periods 50\nnr_throttled 4\nthrottled_time 7000000\n',
      [`cpu/${group}/cpu.cfs_quota_us`]: '50000\n',
      [`cpu/${group}/cpu.cfs_period_us`]: '100000\n',
      [`cpuacct/${group}/cpuacct.usage`]: '2500000000\n',
      [`memory/${group}/memory.usage_in_bytes`]: '1000\n',
      [`memory/${group}/memory.limit_in_bytes`]: '4096\n',
      [`memory/${group}/memory.memsw.usage_in_bytes`]: '1300\n',
      [`memory/${group}/memory.memsw.limit_in_bytes`]: '6144\n',
      [`memory/${group}/memory.oom_control`]: 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n',
      [`pids/${group}/pids.current`]: '7\n',
      [`pids/${group}/pids.max`]: '1024\n',
      [`blkio/${group}/blkio.throttle.io_service_bytes`]:
        '8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\n' +
        '7:3 Read 100\n7:3 Write 0\n7:3 Total 100\nTotal 12388\n',
      [`blkio/${group}/blkio.throttle.io_serviced`]: '8:0 Read 1\n8:0 Write 2\n8:0 Total 3\n7:3 Read 1\nTotal 4\n',
    });
    const manager = new CgroupManager({ version: 'v1', root });
    expect(await manager.stats('env-1')).toEqual({
      cpuUsageNanoseconds: 2_500_000_000,
      cpuThrottledPeriods: 4,
      cpuThrottledNanoseconds: 7_000_000,
      cpuLimitMillicores: 500,
      memoryUsageBytes: 1000,
      memoryLimitBytes: 4096,
      swapUsageBytes: 300,
      swapLimitBytes: 2048,
      oomKills: 0,
      pids: 7,
      pidsLimit: 1024,
      ioReadBytes: 4196,
      ioWriteBytes: 8192,
      ioReadOperations: 2,
      ioWriteOperations: 2,
    });
  });

  it('leaves v1 limits out when unlimited (quota -1, PAGE_COUNTER_MAX, pids max)', async () => {
    const group = 'warren/env-1';
    await layFiles({
      [`cpu/${group}/cpu.cfs_quota_us`]: '-1\n',
      [`cpu/${group}/cpu.cfs_period_us`]: '100000\n',
      [`memory/${group}/memory.usage_in_bytes`]: '10\n',
      [`memory/${group}/memory.limit_in_bytes`]: '9223372036854771712\n',
      [`memory/${group}/memory.memsw.limit_in_bytes`]: '9223372036854771712\n',
      [`pids/${group}/pids.max`]: 'max\n',
      [`blkio/${group}/blkio.throttle.io_service_bytes`]: 'Total 0\n',
    });
    const stats = await new CgroupManager({ version: 'v1', root }).stats('env-1');
    expect(stats).toEqual({ memoryUsageBytes: 10, ioReadBytes: 0, ioWriteBytes: 0 });
  });

  it('reads v2 usage and limits, IO summed over devices from io.stat', async () => {
    const group = 'warren/env-1';
    await layFiles({
      [`${group}/cpu.stat`]:
        'usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 9\nnr_throttled 2\nthrottled_usec 500\n',
      [`${group}/cpu.max`]: '150000 100000\n',
      [`${group}/memory.current`]: '2048\n',
      [`${group}/memory.max`]: '8192\n',
      [`${group}/memory.swap.current`]: '512\n',
      [`${group}/memory.swap.max`]: '1024\n',
      [`${group}/pids.current`]: '4\n',
      [`${group}/pids.max`]: '64\n',
      [`${group}/io.stat`]:
        '8:0 rbytes=1000 wbytes=2000 rios=3 wios=4 dbytes=0 dios=0\n259:0 rbytes=10 wbytes=20 rios=1 wios=1 dbytes=5 dios=1\n',
    });
    expect(await new CgroupManager({ version: 'v2', root }).stats('env-1')).toEqual({
      cpuUsageNanoseconds: 3_000_000_000,
      cpuThrottledPeriods: 2,
      cpuThrottledNanoseconds: 500_000,
      cpuLimitMillicores: 1500,
      memoryUsageBytes: 2048,
      memoryLimitBytes: 8192,
      swapUsageBytes: 512,
      swapLimitBytes: 1024,
      pids: 4,
      pidsLimit: 64,
      ioReadBytes: 1010,
      ioWriteBytes: 2020,
      ioReadOperations: 4,
      ioWriteOperations: 5,
    });
  });

  it('leaves v2 limits out when they are max and IO out without the io controller', async () => {
    await layFiles({ 'warren/env-1/cpu.max': 'max 100000\n', 'warren/env-1/memory.max': 'max\n', 'warren/env-1/pids.max': 'max\n' });
    expect(await new CgroupManager({ version: 'v2', root }).stats('env-1')).toEqual({});
  });
});

describe('cgroup stats parsers', () => {
  it('sums v1 blkio Read and Write lines, ignoring Sync/Async/Total and malformed lines', () => {
    expect(v1BlkioTotals(undefined)).toBeUndefined();
    expect(v1BlkioTotals('')).toEqual({ read: 0, write: 0 });
    expect(v1BlkioTotals('8:0 Read 5\n8:16 Read 6\n8:0 Write x\n8:0 Async 9\nTotal 11\n')).toEqual({ read: 11, write: 0 });
  });
  it('sums v2 io.stat fields and ignores unknown keys', () => {
    expect(v2IoStatTotals(undefined)).toEqual({});
    expect(v2IoStatTotals('8:0 rbytes=1 wbytes=2 rios=3 wios=4 cost.usage=99\n')).toEqual({
      readBytes: 1,
      writeBytes: 2,
      readOperations: 3,
      writeOperations: 4,
    });
  });
  it('turns a CFS quota and period into millicores; unlimited gives undefined', () => {
    expect(millicoresOfQuota(25_000, 100_000)).toBe(250);
    expect(millicoresOfQuota('200000', 100_000)).toBe(2000);
    expect(millicoresOfQuota('max', 100_000)).toBeUndefined();
    expect(millicoresOfQuota(-1, 100_000)).toBeUndefined();
    expect(millicoresOfQuota(50_000, undefined)).toBeUndefined();
  });
});
