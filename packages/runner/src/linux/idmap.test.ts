import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IdmapHelperError, findMount, idmapHelperSourcePath, parseMountInfo } from './idmap.js';

const MOUNTINFO = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
42 27 254:0 /tmp/layer /tmp/e1/lower/0 ro,relatime,idmapped - ext4 /dev/vda rw,discard
43 22 0:50 / /tmp/e1/root\\040fs rw,relatime - overlay overlay rw,lowerdir=/tmp/e1/lower/0,upperdir=/tmp/e1/upper,workdir=/tmp/e1/work
44 22 0:51 / /tmp/e1/root\\040fs rw - tmpfs tmpfs rw
`;

describe('parseMountInfo', () => {
  it('parses fields, decodes octal escapes and keeps optional fields out', () => {
    const entries = parseMountInfo(MOUNTINFO);
    expect(entries).toHaveLength(4);
    expect(entries[1]).toEqual({
      mountId: 42,
      parentId: 27,
      device: '254:0',
      root: '/tmp/layer',
      mountPoint: '/tmp/e1/lower/0',
      mountOptions: ['ro', 'relatime', 'idmapped'],
      fsType: 'ext4',
      source: '/dev/vda',
      superOptions: 'rw,discard',
    });
    expect(entries[2]?.mountPoint).toBe('/tmp/e1/root fs');
    expect(entries[2]?.superOptions).toContain('lowerdir=/tmp/e1/lower/0');
  });

  it('findMount returns the topmost mount at a path, ignoring a trailing slash', () => {
    const entries = parseMountInfo(MOUNTINFO);
    expect(findMount(entries, '/tmp/e1/root fs/')?.fsType).toBe('tmpfs');
    expect(findMount(entries, '/')?.mountId).toBe(22);
    expect(findMount(entries, '/tmp/e1')).toBeUndefined();
  });
});

describe('idmapHelperSourcePath', () => {
  it('finds the C source beside the module when running from src', () => {
    expect(idmapHelperSourcePath()).toMatch(/src\/linux\/idmap-helper\.c$/);
  });

  it('finds ../../src/linux when running from dist/linux, and fails clearly without it', async () => {
    const root = await mkdtemp(join(tmpdir(), 'warren-idmap-path-'));
    try {
      await mkdir(join(root, 'dist/linux'), { recursive: true });
      expect(() => idmapHelperSourcePath(join(root, 'dist/linux'))).toThrow(IdmapHelperError);
      await mkdir(join(root, 'src/linux'), { recursive: true });
      await writeFile(join(root, 'src/linux/idmap-helper.c'), '');
      expect(idmapHelperSourcePath(join(root, 'dist/linux'))).toBe(join(root, 'dist/linux/../../src/linux/idmap-helper.c'));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
