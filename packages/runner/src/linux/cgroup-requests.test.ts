// Unit tests of how CPU and memory requests become cgroup files (v1 cpu.shares / memory.soft_limit_in_bytes,
// v2 cpu.weight / memory.low with the parent's sum) on a fake cgroupfs made of plain directories.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidError, silentLogger } from '@warren/base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CgroupLayout } from './cgroup-fs.js';
import { cpuSharesOf, cpuWeightOf, ociLinuxResources, validateLimits } from './cgroup-limits.js';
import { createV1, updateV1 } from './cgroup-v1.js';
import { createV2, updateV2 } from './cgroup-v2.js';

let root: string;
let layout: CgroupLayout;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-cgroup-requests-'));
  layout = { root, parent: 'warren', swapAccounting: undefined, logger: silentLogger };
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const read = (path: string): Promise<string> => readFile(join(root, path), 'utf8').then((text) => text.trim());
const GiB = 1024 ** 3;

describe('request arithmetic', () => {
  it('maps millicores to v1 shares (1000m = 1024, at least 2) and v2 weights (1000m = 100, 1..10000)', () => {
    expect([0, 1, 250, 1000, 2000, 1_000_000].map(cpuSharesOf)).toEqual([2, 2, 256, 1024, 2048, 262_144]);
    expect([0, 5, 250, 1000, 2000, 1_000_000].map(cpuWeightOf)).toEqual([1, 1, 25, 100, 200, 10_000]);
  });

  it('rejects a request above its limit, naming the field', () => {
    const error = (() => {
      try {
        validateLimits({ cpuMillicores: 500, cpuRequestMillicores: 600, memoryBytes: GiB, memoryRequestBytes: 2 * GiB });
      } catch (thrown) {
        return thrown;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidError);
    expect((error as InvalidError).causes?.map((cause) => cause.field)).toEqual(['cpuRequestMillicores', 'memoryRequestBytes']);
  });

  it('maps requests to OCI shares and memory reservation', () => {
    expect(ociLinuxResources({ cpuMillicores: 2000, cpuRequestMillicores: 250, memoryBytes: 4 * GiB, memoryRequestBytes: GiB })).toEqual({
      cpu: { quota: 200_000, period: 100_000, shares: 256 },
      memory: { limit: 4 * GiB, swap: 4 * GiB, reservation: GiB },
    });
  });
});

describe('requests on cgroup v1', () => {
  beforeEach(async () => {
    for (const controller of ['cpu', 'cpuacct', 'memory', 'pids']) {
      await mkdir(join(root, controller));
      await writeFile(join(root, controller, 'cgroup.procs'), '');
    }
    await writeFile(join(root, 'memory', 'memory.memsw.limit_in_bytes'), '9223372036854771712\n');
  });

  it('writes cpu.shares and memory.soft_limit_in_bytes, and resets them when the requests go', async () => {
    await createV1(layout, 'env-1');
    await updateV1(layout, 'env-1', { cpuMillicores: 2000, cpuRequestMillicores: 250, memoryBytes: 4 * GiB, memoryRequestBytes: GiB });
    expect(await read('cpu/warren/env-1/cpu.cfs_quota_us')).toBe('200000');
    expect(await read('cpu/warren/env-1/cpu.shares')).toBe('256');
    expect(await read('memory/warren/env-1/memory.limit_in_bytes')).toBe(String(4 * GiB));
    expect(await read('memory/warren/env-1/memory.soft_limit_in_bytes')).toBe(String(GiB));
    await updateV1(layout, 'env-1', { cpuMillicores: 2000, memoryBytes: 4 * GiB });
    expect(await read('cpu/warren/env-1/cpu.shares')).toBe('1024');
    expect(await read('memory/warren/env-1/memory.soft_limit_in_bytes')).toBe('-1');
  });
});

describe('requests on cgroup v2', () => {
  beforeEach(async () => {
    await writeFile(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
    await writeFile(join(root, 'cgroup.subtree_control'), '');
  });

  it('writes cpu.weight and memory.low, and keeps the parent memory.low at the sum of its children', async () => {
    await createV2(layout, 'env-1');
    await createV2(layout, 'env-2');
    await writeFile(join(root, 'warren', 'memory.low'), '0\n'); // the kernel makes it with the memory controller
    await updateV2(layout, join(root, 'warren', 'env-1'), {
      cpuMillicores: 2000,
      cpuRequestMillicores: 250,
      memoryBytes: 4 * GiB,
      memoryRequestBytes: GiB,
    });
    await updateV2(layout, join(root, 'warren', 'env-2'), { cpuMillicores: 1000, memoryBytes: 2 * GiB, memoryRequestBytes: 2 * GiB });
    expect(await read('warren/env-1/cpu.max')).toBe('200000 100000');
    expect(await read('warren/env-1/cpu.weight')).toBe('25');
    expect(await read('warren/env-1/memory.low')).toBe(String(GiB));
    expect(await read('warren/env-2/cpu.weight')).toBe('100');
    expect(await read('warren/env-2/memory.low')).toBe(String(2 * GiB));
    expect(await read('warren/memory.low')).toBe(String(3 * GiB));
    await updateV2(layout, join(root, 'warren', 'env-1'), { cpuMillicores: 2000, memoryBytes: 4 * GiB });
    expect(await read('warren/env-1/memory.low')).toBe('0');
    expect(await read('warren/memory.low')).toBe(String(2 * GiB));
  });
});
