import { mkdir, mkdtemp, readFile, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidError } from '@warren/base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CgroupBusyError, CgroupError, CgroupManager, cgroupsPath, detectCgroupVersion, ociLinuxResources } from './cgroups.js';

// A fake cgroupfs made of plain directories. Unlike the kernel, mkdir creates no control files and
// rmdir refuses non-empty directories, so tests strip written files before remove() (see `forgetFiles`).
let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-cgroupfs-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const read = (path: string): Promise<string> => readFile(join(root, path), 'utf8').then((text) => text.trim());

/** Deletes regular files under `dir` so rmdir behaves as on cgroupfs, where control files go with the directory. */
async function forgetFiles(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isFile()) await unlink(join(dir, entry.name));
  }
}

async function fakeV1(options: { memsw?: boolean; coMountCpu?: boolean } = {}): Promise<void> {
  const controllers = ['memory', 'pids', 'freezer', 'devices', 'blkio', 'cpuset', 'systemd'];
  if (options.coMountCpu) {
    await mkdir(join(root, 'cpu,cpuacct'));
    await symlink('cpu,cpuacct', join(root, 'cpu'));
    await symlink('cpu,cpuacct', join(root, 'cpuacct'));
  } else {
    controllers.push('cpu', 'cpuacct');
  }
  for (const controller of controllers) {
    await mkdir(join(root, controller));
    await writeFile(join(root, controller, 'cgroup.procs'), '');
  }
  await mkdir(join(root, 'unified'));
  await writeFile(join(root, 'unified', 'cgroup.controllers'), 'hugetlb\n');
  await writeFile(join(root, 'cpuset', 'cpuset.cpus'), '0-1\n');
  await writeFile(join(root, 'cpuset', 'cpuset.mems'), '0\n');
  if (options.memsw ?? true) await writeFile(join(root, 'memory', 'memory.memsw.limit_in_bytes'), '9223372036854771712\n');
}

async function fakeV2(): Promise<void> {
  await writeFile(join(root, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
  await writeFile(join(root, 'cgroup.subtree_control'), 'memory\n');
}

describe('detectCgroupVersion', () => {
  it('treats v1 hierarchies plus a hugetlb-only unified mount as v1', async () => {
    await fakeV1();
    expect(await detectCgroupVersion(root)).toBe('v1');
  });
  it('detects a pure v2 root by cgroup.controllers', async () => {
    await fakeV2();
    expect(await detectCgroupVersion(root)).toBe('v2');
  });
  it('throws when there is no cgroup filesystem', async () => {
    await expect(detectCgroupVersion(root)).rejects.toBeInstanceOf(CgroupError);
  });
});

describe('CgroupManager on cgroup v1', () => {
  it('creates the group in every controller hierarchy with limits in kernel units', async () => {
    await fakeV1();
    const manager = await CgroupManager.detect({ root });
    expect(manager.version).toBe('v1');
    await manager.create('env-1', { cpuMillicores: 1500, memoryBytes: 256 * 2 ** 20, swapBytes: 2 ** 20, pids: 64 });
    for (const controller of ['cpu', 'cpuacct', 'memory', 'pids', 'freezer', 'devices', 'blkio', 'cpuset']) {
      expect((await readdir(join(root, controller, 'warren'))).includes('env-1')).toBe(true);
    }
    expect(await readdir(join(root, 'systemd'))).not.toContain('warren');
    expect(await read('cpu/warren/env-1/cpu.cfs_period_us')).toBe('100000');
    expect(await read('cpu/warren/env-1/cpu.cfs_quota_us')).toBe('150000');
    expect(await read('memory/warren/env-1/memory.limit_in_bytes')).toBe(String(256 * 2 ** 20));
    expect(await read('memory/warren/env-1/memory.memsw.limit_in_bytes')).toBe(String(257 * 2 ** 20));
    expect(await read('pids/warren/env-1/pids.max')).toBe('64');
    expect(await read('cpuset/warren/cpuset.cpus')).toBe('0-1');
    expect(await read('cpuset/warren/env-1/cpuset.cpus')).toBe('0-1');
    expect(await read('cpuset/warren/env-1/cpuset.mems')).toBe('0');
    expect(manager.cgroupsPath('env-1')).toBe('/warren/env-1');
    expect(await manager.list()).toEqual(['env-1']);
  });

  it('updates level-triggered: absent limits become unlimited, memsw written in a valid order', async () => {
    await fakeV1();
    const manager = new CgroupManager({ version: 'v1', root });
    await manager.create('env-1', { cpuMillicores: 500, memoryBytes: 100, pids: 10 });
    expect(await read('memory/warren/env-1/memory.memsw.limit_in_bytes')).toBe('100');
    await manager.update('env-1', {});
    expect(await read('cpu/warren/env-1/cpu.cfs_quota_us')).toBe('-1');
    expect(await read('memory/warren/env-1/memory.limit_in_bytes')).toBe('-1');
    expect(await read('memory/warren/env-1/memory.memsw.limit_in_bytes')).toBe('-1');
    expect(await read('pids/warren/env-1/pids.max')).toBe('max');
  });

  it('skips memsw when swap accounting is off', async () => {
    await fakeV1({ memsw: false });
    const manager = new CgroupManager({ version: 'v1', root });
    await manager.create('env-1', { memoryBytes: 100, swapBytes: 50 });
    expect(await read('memory/warren/env-1/memory.limit_in_bytes')).toBe('100');
    await expect(read('memory/warren/env-1/memory.memsw.limit_in_bytes')).rejects.toThrow(/ENOENT/);
  });

  it('handles co-mounted cpu,cpuacct once', async () => {
    await fakeV1({ coMountCpu: true });
    const manager = new CgroupManager({ version: 'v1', root });
    const dirs = await manager.directories('env-1');
    expect(dirs.filter((dir) => dir.includes('cpu')).map((dir) => dir.slice(root.length))).toEqual([
      '/cpu/warren/env-1',
      '/cpuset/warren/env-1',
    ]);
    await manager.create('env-1', { cpuMillicores: 250 });
    expect(await read('cpu,cpuacct/warren/env-1/cpu.cfs_quota_us')).toBe('25000');
  });

  it('removes the group from every hierarchy, reports busy groups, and reads stats', async () => {
    await fakeV1();
    const manager = new CgroupManager({ version: 'v1', root });
    await manager.create('env-1', { pids: 5 });
    // runc also creates the path in hierarchies Warren does not limit (name=systemd, unified).
    await mkdir(join(root, 'systemd', 'warren', 'env-1'), { recursive: true });
    await mkdir(join(root, 'unified', 'warren', 'env-1'), { recursive: true });
    await writeFile(join(root, 'cpuacct', 'warren', 'env-1', 'cpuacct.usage'), '123456\n');
    await writeFile(join(root, 'cpu', 'warren', 'env-1', 'cpu.stat'), 'nr_periods 10\nnr_throttled 3\nthrottled_time 999\n');
    await writeFile(join(root, 'memory', 'warren', 'env-1', 'memory.usage_in_bytes'), '4096\n');
    await writeFile(join(root, 'memory', 'warren', 'env-1', 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    await writeFile(join(root, 'pids', 'warren', 'env-1', 'pids.current'), '3\n');
    expect(await manager.stats('env-1')).toEqual({
      cpuUsageNanoseconds: 123456,
      cpuThrottledPeriods: 3,
      cpuThrottledNanoseconds: 999,
      memoryUsageBytes: 4096,
      oomKills: 2,
      pids: 3,
      pidsLimit: 5,
    });

    await mkdir(join(root, 'pids', 'warren', 'env-1', 'child'));
    for (const dir of await readdir(root)) await forgetFiles(join(root, dir, 'warren', 'env-1'));
    await expect(manager.remove('env-1')).rejects.toBeInstanceOf(CgroupBusyError);
    await rm(join(root, 'pids', 'warren', 'env-1', 'child'), { recursive: true });
    expect(await manager.remove('env-1')).toBe(true);
    expect(await manager.remove('env-1')).toBe(false);
    expect(await manager.list()).toEqual([]);
    for (const dir of await readdir(root)) await forgetFiles(join(root, dir, 'warren'));
    expect(await manager.removeParent()).toBe(true);
    for (const dir of await readdir(root)) expect(await readdir(join(root, dir))).not.toContain('warren');
    await expect(manager.stats('env-1')).rejects.toBeInstanceOf(CgroupError);
  });
});

describe('CgroupManager on cgroup v2', () => {
  it('enables controllers in parents and writes v2 limit files', async () => {
    await fakeV2();
    const manager = await CgroupManager.detect({ root, swapAccounting: true });
    expect(manager.version).toBe('v2');
    await manager.create('env-1', { cpuMillicores: 2000, memoryBytes: 1 << 30, swapBytes: 1 << 20, pids: 100 });
    expect(await read('cgroup.subtree_control')).toBe('+cpu +pids +io');
    expect(await read('warren/cgroup.subtree_control')).toBe('+cpu +memory +pids +io');
    expect(await read('warren/env-1/cpu.max')).toBe('200000 100000');
    expect(await read('warren/env-1/memory.max')).toBe(String(1 << 30));
    expect(await read('warren/env-1/memory.swap.max')).toBe(String(1 << 20));
    expect(await read('warren/env-1/pids.max')).toBe('100');
    await manager.update('env-1', { memoryBytes: 1 << 30 });
    expect(await read('warren/env-1/cpu.max')).toBe('max 100000');
    expect(await read('warren/env-1/memory.swap.max')).toBe('0');
    expect(await read('warren/env-1/pids.max')).toBe('max');
    expect(await manager.list()).toEqual(['env-1']);
    expect(await manager.directories('env-1')).toEqual([join(root, 'warren', 'env-1')]);
  });

  it('reads v2 stats and removes the group', async () => {
    await fakeV2();
    const manager = new CgroupManager({ version: 'v2', root });
    await manager.create('env-1', { pids: 8 });
    await expect(read('warren/env-1/memory.swap.max')).rejects.toThrow(/ENOENT/);
    await writeFile(join(root, 'warren/env-1/cpu.stat'), 'usage_usec 5\nnr_throttled 1\nthrottled_usec 2\n');
    await writeFile(join(root, 'warren/env-1/memory.current'), '8192\n');
    await writeFile(join(root, 'warren/env-1/memory.peak'), '16384\n');
    await writeFile(join(root, 'warren/env-1/memory.events'), 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n');
    await writeFile(join(root, 'warren/env-1/pids.current'), '2\n');
    expect(await manager.stats('env-1')).toEqual({
      cpuUsageNanoseconds: 5000,
      cpuThrottledPeriods: 1,
      cpuThrottledNanoseconds: 2000,
      memoryUsageBytes: 8192,
      memoryPeakBytes: 16384,
      oomKills: 1,
      pids: 2,
      pidsLimit: 8,
    });
    await forgetFiles(join(root, 'warren', 'env-1'));
    expect(await manager.remove('env-1')).toBe(true);
    expect(await manager.list()).toEqual([]);
  });

  it('fails to update a group that does not exist', async () => {
    await fakeV2();
    const manager = new CgroupManager({ version: 'v2', root });
    await expect(manager.update('missing', { pids: 1 })).rejects.toBeInstanceOf(CgroupError);
  });
});

describe('limits, names and OCI resources', () => {
  it('maps limits to OCI linux.resources (swap is memory + swap)', () => {
    expect(ociLinuxResources({ cpuMillicores: 250, memoryBytes: 1000, swapBytes: 24, pids: 7 })).toEqual({
      cpu: { quota: 25000, period: 100000 },
      memory: { limit: 1000, swap: 1024 },
      pids: { limit: 7 },
    });
    expect(ociLinuxResources({})).toEqual({});
    expect(ociLinuxResources({ memoryBytes: 10 })).toEqual({ memory: { limit: 10, swap: 10 } });
  });

  it('rejects bad limits and names', async () => {
    expect(() => ociLinuxResources({ cpuMillicores: 5 })).toThrow(InvalidError);
    expect(() => ociLinuxResources({ swapBytes: 1 })).toThrow(InvalidError);
    expect(() => ociLinuxResources({ pids: 0 })).toThrow(InvalidError);
    expect(() => ociLinuxResources({ memoryBytes: 1.5 })).toThrow(InvalidError);
    expect(() => cgroupsPath('../etc')).toThrow(InvalidError);
    expect(cgroupsPath('env-1')).toBe('/warren/env-1');
    await fakeV1();
    await expect(new CgroupManager({ version: 'v1', root }).create('a/b')).rejects.toBeInstanceOf(InvalidError);
  });
});
