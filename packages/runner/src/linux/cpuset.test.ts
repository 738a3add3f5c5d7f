import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { environmentCpus, formatCpuList, parseCpuList, readHostCpus } from './cpuset.js';

describe('cpu lists', () => {
  it('parses and formats the kernel list format', () => {
    expect(parseCpuList('0-3,8,10-11\n')).toEqual([0, 1, 2, 3, 8, 10, 11]);
    expect(parseCpuList('')).toEqual([]);
    expect(parseCpuList('3-1')).toEqual([]);
    expect(parseCpuList('a')).toEqual([]);
    expect(formatCpuList([5, 0, 1, 2])).toBe('0-2,5');
    expect(formatCpuList([1])).toBe('1');
  });
});

describe('environmentCpus', () => {
  const two = [0, 1];
  it('gives a 500m environment one CPU, spread over the host by slot', () => {
    expect([0, 1, 2, 3].map((slot) => environmentCpus(500, slot, two))).toEqual(['0', '1', '0', '1']);
  });

  it('sets no cpuset when the limit covers every host CPU, or without a limit', () => {
    expect(environmentCpus(2000, 0, two)).toBeUndefined();
    expect(environmentCpus(1001, 3, two)).toBeUndefined();
    expect(environmentCpus(undefined, 0, two)).toBeUndefined();
    expect(environmentCpus(500, 0, [])).toBeUndefined();
  });

  it('gives ceil(limit / 1000) consecutive CPUs, wrapping, in host order', () => {
    const host = [0, 1, 2, 3, 8, 9];
    expect(environmentCpus(1500, 0, host)).toBe('0-1');
    expect(environmentCpus(1500, 1, host)).toBe('2-3');
    expect(environmentCpus(1500, 2, host)).toBe('8-9');
    expect(environmentCpus(2500, 1, host)).toBe('3,8-9');
    expect(environmentCpus(1500, 2, [0, 1, 2, 3, 8])).toBe('0,8');
    expect(environmentCpus(10, 5, host)).toBe('9');
  });
});

describe('readHostCpus', () => {
  it('takes the first readable, non-empty list', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cpuset-'));
    try {
      await writeFile(join(dir, 'empty'), '\n');
      await writeFile(join(dir, 'online'), '0-2\n');
      expect(await readHostCpus([join(dir, 'missing'), join(dir, 'empty'), join(dir, 'online')])).toEqual([0, 1, 2]);
      expect(await readHostCpus([join(dir, 'missing')])).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
