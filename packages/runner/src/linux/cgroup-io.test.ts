import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidError } from '@warren/base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type DeviceIoLimits,
  V1_THROTTLE_FILES,
  blockDeviceOf,
  blockDevicesOf,
  deviceIoLimits,
  ociBlockIo,
  v1IoWrites,
  v2IoMaxLines,
  validateIoLimits,
} from './cgroup-io.js';
import { ociLinuxResources } from './cgroup-limits.js';
import { CgroupManager } from './cgroups.js';

// The kernel keeps one rule per device in each throttle file; a write replaces that device's rule and a v1 value
// of 0 (v2: every key `max`) deletes it. These two apply the planned writes the same way, to check end states.
function kernelV1(files: Record<string, string>, writes: { file: string; line: string }[]): Record<string, string> {
  const rules = new Map(
    Object.entries(files).map(([file, text]) => [
      file,
      new Map(
        text
          .split('\n')
          .filter(Boolean)
          .map((line) => line.split(' ') as [string, string]),
      ),
    ]),
  );
  for (const { file, line } of writes) {
    const [key, value] = line.split(' ') as [string, string];
    const table = rules.get(file) ?? new Map<string, string>();
    rules.set(file, table);
    if (value === '0') table.delete(key);
    else table.set(key, value);
  }
  return Object.fromEntries([...rules].map(([file, table]) => [file, [...table].map(([key, value]) => `${key} ${value}\n`).join('')]));
}

function kernelV2(ioMax: string, lines: string[]): string {
  const rules = new Map(
    ioMax
      .split('\n')
      .filter(Boolean)
      .map((line) => [line.split(' ')[0]!, line]),
  );
  for (const line of lines) {
    const key = line.split(' ')[0]!;
    if (/^\S+( \w+=max)+$/.test(line)) rules.delete(key);
    else rules.set(key, line);
  }
  return [...rules.values()].map((line) => `${line}\n`).join('');
}

const disk = { major: 254, minor: 0 };
const loop = { major: 7, minor: 3 };
const empty = Object.fromEntries(Object.values(V1_THROTTLE_FILES).map((file) => [file, '']));

describe('deviceIoLimits', () => {
  it('puts the same limits on each device once, leaving out zero fields', () => {
    expect(deviceIoLimits([disk, loop, disk], { writeBytesPerSecond: 2 * 2 ** 20, readIops: 0 })).toEqual([
      { major: 254, minor: 0, writeBytesPerSecond: 2 * 2 ** 20 },
      { major: 7, minor: 3, writeBytesPerSecond: 2 * 2 ** 20 },
    ]);
  });
  it('is empty when nothing is limited', () => {
    expect(deviceIoLimits([disk], undefined)).toEqual([]);
    expect(deviceIoLimits([disk], { readBytesPerSecond: 0 })).toEqual([]);
  });
});

describe('validateIoLimits', () => {
  it('rejects negative values and a device listed twice', () => {
    const bad: DeviceIoLimits[] = [{ ...disk, readIops: -1 }, { ...disk }];
    expect(() => validateIoLimits(bad)).toThrow(InvalidError);
    try {
      validateIoLimits(bad);
    } catch (error) {
      expect((error as InvalidError).causes.map((cause) => cause.field)).toEqual(['io[0].readIops', 'io[1]']);
    }
  });
});

describe('cgroup v1 blkio.throttle writes', () => {
  it('writes MAJ:MIN value per limited field and device', () => {
    const limits = deviceIoLimits([disk, loop], { readBytesPerSecond: 4096, writeIops: 100 });
    expect(kernelV1(empty, v1IoWrites(limits, empty))).toEqual({
      'blkio.throttle.read_bps_device': '254:0 4096\n7:3 4096\n',
      'blkio.throttle.write_bps_device': '',
      'blkio.throttle.read_iops_device': '',
      'blkio.throttle.write_iops_device': '254:0 100\n7:3 100\n',
    });
  });
  it('deletes rules (value 0) of devices and fields no longer limited', () => {
    const current = {
      ...empty,
      'blkio.throttle.read_bps_device': '254:0 4096\n8:0 10\n',
      'blkio.throttle.write_iops_device': '254:0 100\n',
    };
    const writes = v1IoWrites(deviceIoLimits([disk], { readBytesPerSecond: 8192 }), current);
    expect(writes).toContainEqual({ file: 'blkio.throttle.read_bps_device', line: '8:0 0' });
    expect(writes).toContainEqual({ file: 'blkio.throttle.write_iops_device', line: '254:0 0' });
    expect(kernelV1(current, writes)).toEqual({ ...empty, 'blkio.throttle.read_bps_device': '254:0 8192\n' });
  });
});

describe('cgroup v2 io.max lines', () => {
  it('writes one line per device with max for unlimited keys', () => {
    const limits = deviceIoLimits([disk], { writeBytesPerSecond: 2097152, readIops: 50 });
    expect(v2IoMaxLines(limits, '')).toEqual(['254:0 rbps=max wbps=2097152 riops=50 wiops=max']);
  });
  it('resets devices no longer limited to all max (which deletes the rule)', () => {
    const current = '254:0 rbps=1 wbps=max riops=max wiops=max\n7:3 rbps=max wbps=5 riops=max wiops=max\n';
    const lines = v2IoMaxLines(deviceIoLimits([loop], { writeBytesPerSecond: 9 }), current);
    expect(lines).toEqual(['254:0 rbps=max wbps=max riops=max wiops=max', '7:3 rbps=max wbps=9 riops=max wiops=max']);
    expect(kernelV2(current, lines)).toBe('7:3 rbps=max wbps=9 riops=max wiops=max\n');
  });
});

describe('OCI blockIO', () => {
  it('lists each limited field per device; nothing when unlimited', () => {
    const limits = deviceIoLimits([disk], { writeBytesPerSecond: 2097152, readIops: 50 });
    expect(ociBlockIo(limits)).toEqual({
      throttleWriteBpsDevice: [{ major: 254, minor: 0, rate: 2097152 }],
      throttleReadIOPSDevice: [{ major: 254, minor: 0, rate: 50 }],
    });
    expect(ociBlockIo([])).toBeUndefined();
    expect(ociLinuxResources({ pids: 10 })).toEqual({ pids: { limit: 10 } });
    expect(ociLinuxResources({ io: limits }).blockIO).toEqual(ociBlockIo(limits));
  });
});

describe('blockDeviceOf with a fake sysfs', () => {
  let dir: string;
  let device: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-sysfs-'));
    const { dev } = await stat(dir, { bigint: true });
    device = `${Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn))}:${Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn))}`;
    await mkdir(join(dir, 'sys', 'dev', 'block'), { recursive: true });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives a whole disk as itself', async () => {
    await mkdir(join(dir, 'sys', 'block', 'vda'), { recursive: true });
    await writeFile(join(dir, 'sys', 'block', 'vda', 'dev'), `${device}\n`);
    await symlink('../../block/vda', join(dir, 'sys', 'dev', 'block', device));
    const [major, minor] = device.split(':').map(Number);
    expect(await blockDeviceOf(dir, join(dir, 'sys'))).toEqual({ major, minor });
  });
  it('gives a partition as its whole disk (the kernel refuses throttle rules on partitions)', async () => {
    await mkdir(join(dir, 'sys', 'block', 'sda', 'sda2'), { recursive: true });
    await writeFile(join(dir, 'sys', 'block', 'sda', 'dev'), '8:0\n');
    await writeFile(join(dir, 'sys', 'block', 'sda', 'sda2', 'dev'), `${device}\n`);
    await writeFile(join(dir, 'sys', 'block', 'sda', 'sda2', 'partition'), '2\n');
    await symlink('../../block/sda/sda2', join(dir, 'sys', 'dev', 'block', device));
    expect(await blockDeviceOf(dir, join(dir, 'sys'))).toEqual({ major: 8, minor: 0 });
    expect(await blockDevicesOf([dir, dir], join(dir, 'sys'))).toEqual([{ major: 8, minor: 0 }]);
  });
  it('gives undefined for a filesystem without a block device', async () => {
    expect(await blockDeviceOf(dir, join(dir, 'sys'))).toBeUndefined();
    expect(await blockDevicesOf([dir], join(dir, 'sys'))).toEqual([]);
  });
});

describe('CgroupManager IO limits on a fake cgroupfs', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'warren-cgroupfs-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });
  const read = (path: string): Promise<string> => readFile(join(root, path), 'utf8').then((text) => text.trim());
  const io = deviceIoLimits([disk], { writeBytesPerSecond: 2097152, readIops: 50 });

  it('v1: writes blkio.throttle.* of the group', async () => {
    for (const controller of ['cpu', 'memory', 'pids', 'blkio']) {
      await mkdir(join(root, controller));
      await writeFile(join(root, controller, 'cgroup.procs'), '');
    }
    const manager = await CgroupManager.detect({ root });
    await manager.create('env-1');
    // The kernel makes the control files with the directory; the fake tree needs them made.
    for (const file of Object.values(V1_THROTTLE_FILES)) await writeFile(join(root, 'blkio', 'warren', 'env-1', file), '');
    await manager.update('env-1', { io });
    expect(await read('blkio/warren/env-1/blkio.throttle.write_bps_device')).toBe('254:0 2097152');
    expect(await read('blkio/warren/env-1/blkio.throttle.read_iops_device')).toBe('254:0 50');
    expect(await read('blkio/warren/env-1/blkio.throttle.read_bps_device')).toBe('');
    // Level-triggered: without io the rules are deleted (the plain file shows the last write).
    await manager.update('env-1', {});
    expect(await read('blkio/warren/env-1/blkio.throttle.write_bps_device')).toBe('254:0 0');
  });
  it('v1: without a blkio hierarchy the limits are skipped, not an error', async () => {
    for (const controller of ['cpu', 'memory', 'pids']) {
      await mkdir(join(root, controller));
      await writeFile(join(root, controller, 'cgroup.procs'), '');
    }
    const manager = await CgroupManager.detect({ root });
    await manager.create('env-1', { io });
    expect(await read('pids/warren/env-1/pids.max')).toBe('max');
  });
  it('v2: enables +io and writes io.max of the group', async () => {
    await writeFile(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
    await writeFile(join(root, 'cgroup.subtree_control'), '');
    const manager = await CgroupManager.detect({ root });
    await mkdir(join(root, 'warren', 'env-1'), { recursive: true });
    await writeFile(join(root, 'warren', 'env-1', 'io.max'), '');
    await manager.create('env-1', { io });
    expect(await read('cgroup.subtree_control')).toContain('+io');
    expect(await read('warren/env-1/io.max')).toBe('254:0 rbps=max wbps=2097152 riops=50 wiops=max');
  });
});
