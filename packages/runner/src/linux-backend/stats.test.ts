// statsFromCgroup: cgroup nanoseconds become seconds, absent figures stay absent, disk usage is carried over.
import { describe, expect, it } from 'vitest';
import { statsFromCgroup } from './stats.js';

describe('statsFromCgroup', () => {
  it('converts units and leaves out what the host did not expose', () => {
    const at = new Date(0);
    expect(
      statsFromCgroup('env-1', { cpuUsageNanoseconds: 1_500_000_000, cpuThrottledNanoseconds: 250_000_000, memoryUsageBytes: 10 }, at, {
        usedBytes: 5,
        limitBytes: 100,
      }),
    ).toEqual({
      environmentId: 'env-1',
      sampleTime: '1970-01-01T00:00:00.000Z',
      cpuUsageSeconds: 1.5,
      cpuThrottledSeconds: 0.25,
      memoryUsageBytes: 10,
      diskUsedBytes: 5,
      diskLimitBytes: 100,
    });
    expect(statsFromCgroup('env-1', {}, at)).toEqual({ environmentId: 'env-1', sampleTime: '1970-01-01T00:00:00.000Z' });
  });
});
