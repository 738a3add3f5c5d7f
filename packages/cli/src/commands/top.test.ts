// `warren env top` rows: CPU %, throttling and IO rates from two stats samples, levels from the latest, no rate
// across a counter reset, and the table's cells.
import type { Environment, EnvironmentStats } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { renderTop, topRow } from './top.js';

const environment = { metadata: { id: 'env-1', name: 'alpha' } } as Environment;

function sample(at: number, fields: Partial<EnvironmentStats>): EnvironmentStats {
  return { environmentId: 'env-1', sampleTime: new Date(at).toISOString(), ...fields };
}

describe('env top', () => {
  it('computes rates over the interval between the samples and shows the latest levels', () => {
    const before = sample(10_000, { cpuUsageSeconds: 10, cpuThrottledSeconds: 1, ioReadBytes: 0, ioWriteBytes: 1000 });
    const after = sample(12_000, {
      cpuUsageSeconds: 11,
      cpuThrottledSeconds: 1.2,
      ioReadBytes: 4096,
      ioWriteBytes: 1000 + 2 * 1024 * 1024,
      cpuLimitMillicores: 500,
      memoryUsageBytes: 64 * 1024 * 1024,
      memoryLimitBytes: 512 * 1024 * 1024,
      diskUsedBytes: 1024 ** 3,
      diskLimitBytes: 20 * 1024 ** 3,
      pids: 12,
    });
    const row = topRow(environment, before, after);
    expect(row).toEqual({
      name: 'alpha',
      id: 'env-1',
      cpuPercent: 50,
      throttledPercent: expect.closeTo(10, 6) as number,
      ioReadBytesPerSecond: 2048,
      ioWriteBytesPerSecond: 1024 * 1024,
      cpuLimitMillicores: 500,
      memoryUsageBytes: 64 * 1024 * 1024,
      memoryLimitBytes: 512 * 1024 * 1024,
      diskUsedBytes: 1024 ** 3,
      diskLimitBytes: 20 * 1024 ** 3,
      pids: 12,
    });
    const table = renderTop([row, { name: 'beta', id: 'env-2', error: 'not running' }], 'table').split('\n');
    expect(table[0]).toMatch(/^NAME\s+CPU%\s+CPU LIMIT\s+THROTTLED%\s+MEMORY\s+SWAP\s+IO READ\/WRITE\s+DISK\s+PIDS\s+STATUS$/);
    expect(table[1]).toMatch(
      /^alpha\s+50\.0\s+500m\s+10\.0\s+64 MiB \/ 512 MiB\s+-\s+2\.0 KiB\/s \/ 1\.0 MiB\/s\s+1\.0 GiB \/ 20 GiB\s+12\s+ok$/,
    );
    expect(table[2]).toMatch(/^beta\s+-\s+max\s+-\s+-\s+-\s+-\s+-\s+-\s+not running$/);
  });

  it('gives no rate without a previous sample or when a counter went backwards (container restarted)', () => {
    const after = sample(12_000, { cpuUsageSeconds: 1, ioReadBytes: 10 });
    expect(topRow(environment, undefined, after).cpuPercent).toBeUndefined();
    const row = topRow(environment, sample(10_000, { cpuUsageSeconds: 50, ioReadBytes: 5 }), after);
    expect(row.cpuPercent).toBeUndefined();
    expect(row.ioReadBytesPerSecond).toBe(2.5);
  });

  it('prints JSON rows for --output json', () => {
    const rows = [{ name: 'alpha', id: 'env-1', cpuPercent: 1 }];
    expect(JSON.parse(renderTop(rows, 'json'))).toEqual(rows);
  });
});
