// Unpacks real layer tars with GNU tar and stacks them with a real overlayfs mount (needs root).
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exec } from '../linux/index.js';
import { detectCompression, unpackLayer } from './layer-unpack.js';
import { buildLayer } from './testing/build-image.js';

describe('unpackLayer', () => {
  let dir: string;
  const mounts: string[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-unpack-'));
  });
  afterEach(async () => {
    for (const mount of mounts.splice(0)) await exec(['umount', mount], { okCodes: [0, 32] });
    await rm(dir, { recursive: true, force: true });
  });

  async function unpack(name: string, layer: { bytes: Buffer }) {
    const blob = join(dir, `${name}.blob`);
    await writeFile(blob, layer.bytes);
    const target = join(dir, name);
    await mkdir(target);
    return { target, result: await unpackLayer(blob, target) };
  }

  it('keeps owners and modes and computes the DiffID, for gzip, zstd and plain tars', async () => {
    for (const compression of ['gzip', 'zstd', 'none'] as const) {
      const layer = await buildLayer(
        [
          { name: 'usr/', type: 'directory' },
          { name: 'usr/bin/', type: 'directory' },
          { name: 'usr/bin/sudo', content: 'x', mode: 0o4755, uid: 0, gid: 0 },
          { name: 'home/', type: 'directory' },
          { name: 'home/dev/', type: 'directory', uid: 1000, gid: 1000, mode: 0o700 },
          { name: 'home/dev/file', content: 'hello', uid: 1000, gid: 1000 },
          { name: 'home/dev/hard', type: 'link', linkname: 'home/dev/file', uid: 1000, gid: 1000 },
          { name: 'home/dev/soft', type: 'symlink', linkname: 'file' },
        ],
        compression,
      );
      const blob = join(dir, `${compression}.blob`);
      await writeFile(blob, layer.bytes);
      expect(await detectCompression(blob)).toBe(compression);
      const { target, result } = await unpack(compression, layer);
      expect(result.diffId).toBe(layer.diffId);
      const sudo = await stat(join(target, 'usr/bin/sudo'));
      expect(sudo.mode & 0o7777).toBe(0o4755);
      const home = await stat(join(target, 'home/dev'));
      expect([home.uid, home.gid, home.mode & 0o7777]).toEqual([1000, 1000, 0o700]);
      const file = await stat(join(target, 'home/dev/file'));
      expect([file.uid, file.nlink]).toEqual([1000, 2]);
      expect(await readFile(join(target, 'home/dev/soft'), 'utf8')).toBe('hello');
    }
  });

  it('converts whiteouts and opaque markers so an overlay of two layers shows the right view', async () => {
    const lower = await buildLayer(
      [
        { name: 'etc/', type: 'directory' },
        { name: 'etc/deleted', content: 'gone' },
        { name: 'etc/kept', content: 'kept' },
        { name: 'opaque/', type: 'directory', uid: 7, gid: 8, mode: 0o751 },
        { name: 'opaque/old', content: 'hidden' },
        { name: 'opaque/sub/', type: 'directory' },
        { name: 'opaque/sub/older', content: 'hidden' },
        { name: 'deleted-dir/', type: 'directory' },
        { name: 'deleted-dir/x', content: 'x' },
      ],
      'gzip',
    );
    const upper = await buildLayer(
      [
        { name: 'etc/', type: 'directory' },
        { name: 'etc/.wh.deleted' },
        { name: 'opaque/', type: 'directory', uid: 7, gid: 8, mode: 0o751 },
        { name: 'opaque/.wh..wh..opq' },
        { name: 'opaque/new', content: 'new' },
        { name: '.wh.deleted-dir' },
        { name: 'same/', type: 'directory' },
        { name: 'same/file', content: 'same layer' },
        { name: 'same/.wh.file' },
      ],
      'zstd',
    );
    const { target: lowerDir } = await unpack('lower', lower);
    const { target: upperDir, result } = await unpack('upper', upper);
    expect(result.whiteouts.sort()).toEqual(['deleted-dir', 'etc/deleted']);
    expect(result.opaqueDirectories).toEqual(['opaque']);
    const device = await stat(join(upperDir, 'etc/deleted'));
    expect(device.isCharacterDevice()).toBe(true);
    expect(device.rdev).toBe(0);
    const opaque = await stat(join(upperDir, 'opaque'));
    expect([opaque.uid, opaque.gid, opaque.mode & 0o7777]).toEqual([7, 8, 0o751]);
    expect(await readdir(join(upperDir, 'opaque'))).toEqual(['new']);

    const merged = join(dir, 'merged');
    await mkdir(merged);
    await exec(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${upperDir}:${lowerDir}`, merged]);
    mounts.push(merged);
    expect((await readdir(join(merged, 'etc'))).sort()).toEqual(['kept']);
    expect(await readdir(join(merged, 'opaque'))).toEqual(['new']);
    expect((await readdir(merged)).sort()).toEqual(['etc', 'opaque', 'same']);
    expect(await readFile(join(merged, 'same/file'), 'utf8')).toBe('same layer');
  });

  it('never converts a whiteout through a symlink planted by the layer', async () => {
    const outside = join(dir, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'victim'), 'host file');
    const inside = await buildLayer(
      [{ name: 'sub/', type: 'directory' }, { name: 'link', type: 'symlink', linkname: 'sub' }, { name: 'link/.wh.x' }],
      'none',
    );
    const { target, result } = await unpack('inside', inside);
    expect(result.whiteouts).toEqual([]);
    expect(await readdir(join(target, 'sub'))).toEqual(['.wh.x']);

    const escaping = await buildLayer(
      [{ name: 'out', type: 'symlink', linkname: outside }, { name: 'out/.wh.victim' }, { name: 'out/.wh.new' }],
      'none',
    );
    await unpack('escaping', escaping).catch(() => undefined);
    expect((await readdir(outside)).sort()).toEqual(['victim']);
    expect(await readFile(join(outside, 'victim'), 'utf8')).toBe('host file');
  });

  it('fails with the tool error on a corrupt blob', async () => {
    const layer = await buildLayer([{ name: 'a', content: 'a'.repeat(10000) }], 'gzip');
    const corrupt = Buffer.from(layer.bytes);
    corrupt.fill(0x41, 20, 60);
    await expect(unpack('corrupt', { bytes: corrupt })).rejects.toThrow();
  });
});
