import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidError } from '@warren/base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_SLOT, SlotAllocator, slotInfo } from './slots.js';

describe('slotInfo', () => {
  it('derives addresses, uid range and names for slot 0', () => {
    expect(slotInfo(0)).toMatchObject({
      uidBase: 2 ** 30,
      idCount: 65536,
      subnetCidr: '10.88.0.0/30',
      hostAddress: '10.88.0.1',
      environmentAddress: '10.88.0.2',
      netnsName: 'warren-0',
      netnsPath: '/run/netns/warren-0',
      hostInterface: 'warren0h',
      environmentInterface: 'warren0c',
    });
  });

  it('carries into the third octet and keeps names within IFNAMSIZ', () => {
    const info = slotInfo(64);
    expect(info.subnetCidr).toBe('10.88.1.0/30');
    expect(info.hostAddress).toBe('10.88.1.1');
    const last = slotInfo(MAX_SLOT);
    expect(last.subnetCidr).toBe('10.88.255.248/30');
    expect(last.environmentAddress).toBe('10.88.255.250');
    expect(last.hostInterface.length).toBeLessThanOrEqual(15);
    expect(last.uidBase + last.idCount).toBeLessThanOrEqual(2 ** 32 - 1);
    expect(slotInfo(1).uidBase).toBe(2 ** 30 + 65536);
  });

  it('rejects out-of-range slots', () => {
    expect(() => slotInfo(-1)).toThrow(InvalidError);
    expect(() => slotInfo(MAX_SLOT + 1)).toThrow(InvalidError);
    expect(() => slotInfo(1.5)).toThrow(InvalidError);
  });
});

describe('SlotAllocator', () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'warren-slots-'));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('allocates the lowest free slot and is idempotent per environment', async () => {
    const slots = new SlotAllocator(dataDir);
    expect(await slots.allocate('env-a')).toBe(0);
    expect(await slots.allocate('env-b')).toBe(1);
    expect(await slots.allocate('env-a')).toBe(0);
    expect(await slots.lookup('env-b')).toBe(1);
    expect(await slots.lookup('env-z')).toBeUndefined();
    expect([...(await slots.list())]).toEqual([
      [0, 'env-a'],
      [1, 'env-b'],
    ]);
  });

  it('gives one slot to concurrent requests for the same environment', async () => {
    const slots = new SlotAllocator(dataDir);
    const got = await Promise.all([slots.allocate('env-a'), slots.allocate('env-a'), slots.allocate('env-b')]);
    expect(got).toEqual([0, 0, 1]);
  });

  it('does not hand out a slot claimed by another allocator on the same data dir', async () => {
    const first = new SlotAllocator(dataDir);
    const second = new SlotAllocator(dataDir);
    const got = await Promise.all([first.allocate('env-a'), second.allocate('env-b')]);
    expect(new Set(got).size).toBe(2);
    expect((await new SlotAllocator(dataDir).list()).size).toBe(2);
  });

  it('reuses a released slot, survives a restart and leaves no staging entries', async () => {
    const slots = new SlotAllocator(dataDir);
    await slots.allocate('env-a');
    await slots.allocate('env-b');
    await slots.release(0);
    await slots.release(0);
    const restarted = new SlotAllocator(dataDir);
    expect([...(await restarted.list())]).toEqual([[1, 'env-b']]);
    expect(await restarted.allocate('env-c')).toBe(0);
    expect((await readdir(join(dataDir, 'slots'))).sort()).toEqual(['0', '1']);
  });

  it('ignores entries that are not claims', async () => {
    const slots = new SlotAllocator(dataDir);
    await slots.allocate('env-a');
    await writeFile(join(dataDir, 'slots', 'README'), 'x');
    expect([...(await slots.list())]).toEqual([[0, 'env-a']]);
  });

  it('rejects an invalid environment id', async () => {
    await expect(new SlotAllocator(dataDir).allocate('a\nb')).rejects.toThrow(InvalidError);
  });
});
