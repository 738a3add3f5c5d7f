// Unit tests of the EnvironmentClass spec schema: requests, IO limits and their field errors.
import { describe, expect, it } from 'vitest';
import { EnvironmentClassPatchSchema, EnvironmentClassSpecSchema, classRequests } from './resources.js';

const GiB = 1024 ** 3;

describe('EnvironmentClassSpecSchema', () => {
  it('accepts a class without requests or io (classes made before requests existed)', () => {
    const spec = EnvironmentClassSpecSchema.parse({ cpuMillicores: 2000, memoryBytes: 4 * GiB });
    expect(spec).toEqual({ cpuMillicores: 2000, memoryBytes: 4 * GiB, swapBytes: 0, pids: 4096 });
    expect(classRequests(spec)).toEqual({ cpuMillicores: 2000, memoryBytes: 4 * GiB });
  });

  it('keeps requests below the limits and io limits', () => {
    const spec = EnvironmentClassSpecSchema.parse({
      cpuMillicores: 2000,
      memoryBytes: 4 * GiB,
      requests: { cpuMillicores: 250, memoryBytes: GiB },
      io: { readBytesPerSecond: 100e6, writeIops: 500 },
    });
    expect(classRequests(spec)).toEqual({ cpuMillicores: 250, memoryBytes: GiB });
    expect(spec.io).toEqual({ readBytesPerSecond: 100e6, writeIops: 500 });
  });

  it('defaults each absent request to its limit', () => {
    const spec = EnvironmentClassSpecSchema.parse({ cpuMillicores: 1000, memoryBytes: 2 * GiB, requests: { cpuMillicores: 100 } });
    expect(classRequests(spec)).toEqual({ cpuMillicores: 100, memoryBytes: 2 * GiB });
  });

  it('rejects a request above its limit with an error on that field', () => {
    const result = EnvironmentClassSpecSchema.safeParse({
      cpuMillicores: 500,
      memoryBytes: GiB,
      requests: { cpuMillicores: 600, memoryBytes: 2 * GiB },
    });
    expect(result.success).toBe(false);
    const issues = result.error?.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
    expect(issues).toEqual([
      { path: 'requests.cpuMillicores', message: expect.stringContaining('at most the CPU limit') as string },
      { path: 'requests.memoryBytes', message: expect.stringContaining('at most the memory limit') as string },
    ]);
  });

  it('rejects negative, fractional and unknown io fields', () => {
    for (const io of [{ readIops: -1 }, { writeBytesPerSecond: 1.5 }, { readBandwidth: 1 }]) {
      expect(EnvironmentClassSpecSchema.safeParse({ cpuMillicores: 500, memoryBytes: GiB, io }).success, JSON.stringify(io)).toBe(false);
    }
  });

  it('lets a merge patch carry requests alone (checked again after merging)', () => {
    const patch = EnvironmentClassPatchSchema.parse({ spec: { requests: { cpuMillicores: 250 } } });
    expect(patch.spec?.requests).toEqual({ cpuMillicores: 250 });
  });
});
