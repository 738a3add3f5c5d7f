import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLxcfs } from './lxcfs.js';

describe('startLxcfs degrades with a reason, never an exception', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lxcfs-unit-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports LxcfsNotInstalled without the binary', async () => {
    const result = await startLxcfs({ dir: join(dir, 'a'), binary: join(dir, 'no-such-lxcfs') });
    expect(result).toEqual({ unavailable: { reason: 'LxcfsNotInstalled', message: expect.stringContaining('no-such-lxcfs') as unknown } });
  });

  it('reports FuseUnavailable when the FUSE device is not a character device', async () => {
    const fake = join(dir, 'fake-lxcfs');
    await writeFile(fake, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const result = await startLxcfs({ dir: join(dir, 'b'), binary: fake, fuseDevice: join(dir, 'no-fuse') });
    expect(result).toMatchObject({ unavailable: { reason: 'FuseUnavailable' } });
  });
});
