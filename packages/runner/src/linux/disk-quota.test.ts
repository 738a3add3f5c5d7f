// Unit tests of the disk quota adapter's argument building and output parsing (no tools run).
import { describe, expect, it } from 'vitest';
import { DISK_MINIMUM_BYTES, backingPath, imageSize, mkfsArgs, parseLosetupAssociated, parseLosetupList } from './disk-quota.js';

describe('mkfsArgs', () => {
  it('formats a regular file with 4 KiB blocks, no root reserve, lazy init and no discard', () => {
    expect(mkfsArgs('/data/environments/env-a/disk.img')).toEqual([
      'mkfs.ext4',
      '-q',
      '-F',
      '-b',
      '4096',
      '-m',
      '0',
      '-E',
      'lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0',
      '/data/environments/env-a/disk.img',
    ]);
  });
});

describe('imageSize', () => {
  it('rounds up to whole 4 KiB blocks', () => {
    expect(imageSize(64 * 1024 * 1024 + 1)).toBe(64 * 1024 * 1024 + 4096);
    expect(imageSize(64 * 1024 * 1024)).toBe(64 * 1024 * 1024);
  });

  it('never goes below the minimum', () => {
    expect(imageSize(1)).toBe(DISK_MINIMUM_BYTES);
  });
});

describe('parseLosetupAssociated', () => {
  it('takes the device of every line', () => {
    const stdout = '/dev/loop0: [65024]:2146529 (/tmp/a.img)\n/dev/loop12: [65024]:2146529 (/tmp/a.img)\n';
    expect(parseLosetupAssociated(stdout)).toEqual(['/dev/loop0', '/dev/loop12']);
  });

  it('is empty for no output', () => {
    expect(parseLosetupAssociated('')).toEqual([]);
  });
});

describe('parseLosetupList', () => {
  it('reads name and backing file, skipping devices without one', () => {
    const stdout = JSON.stringify({
      loopdevices: [
        { name: '/dev/loop0', 'back-file': '/data/environments/env-a/disk.img' },
        { name: '/dev/loop1', 'back-file': '/data/environments/env-b/disk.img (deleted)' },
        { name: '/dev/loop2', 'back-file': null },
      ],
    });
    const devices = parseLosetupList(stdout);
    expect(devices).toEqual([
      { name: '/dev/loop0', backFile: '/data/environments/env-a/disk.img' },
      { name: '/dev/loop1', backFile: '/data/environments/env-b/disk.img (deleted)' },
    ]);
    expect(devices.map(backingPath)).toEqual(['/data/environments/env-a/disk.img', '/data/environments/env-b/disk.img']);
  });

  it('is empty when losetup prints nothing (no devices)', () => {
    expect(parseLosetupList('')).toEqual([]);
    expect(parseLosetupList('{"loopdevices": []}')).toEqual([]);
  });
});
