import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { assertSearchableByEnvironments } from './runner.js';

describe('assertSearchableByEnvironments', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('names the directory that environments cannot enter, and the fix', async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-runner-')); // mkdtemp makes it 0700
    await expect(assertSearchableByEnvironments(join(dir, 'data', 'runner'))).rejects.toThrow(`chmod o+x ${dir}`);
  });

  it('leaves the data dir itself to the backend (it makes it searchable)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-runner-'));
    await expect(assertSearchableByEnvironments(dir)).resolves.toBeUndefined();
  });

  it('accepts a searchable path, including parts not yet created', async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-runner-'));
    await chmod(dir, 0o711);
    await mkdir(join(dir, 'data'), { mode: 0o755 });
    await expect(assertSearchableByEnvironments(join(dir, 'data', 'runner', 'x'))).resolves.toBeUndefined();
  });
});
