import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readContextFile, resolveContext, saveContext } from './context.js';

describe('CLI context file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('saves with mode 0600 and makes the context current', async () => {
    const path = join(dir, 'warren', 'config.json');
    await saveContext('local', { server: 'http://127.0.0.1:7080', token: 'wrn_secret' }, path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const file = await readContextFile(path);
    expect(file.current).toBe('local');
    expect(file.contexts.local?.token).toBe('wrn_secret');
    const resolved = await resolveContext({}, { WARREN_CONFIG: path });
    expect(resolved.server).toBe('http://127.0.0.1:7080');
  });

  it('lets flags win over the saved context', async () => {
    const path = join(dir, 'config.json');
    await saveContext('local', { server: 'http://a', token: 't1' }, path);
    expect(await resolveContext({ server: 'http://b' }, { WARREN_CONFIG: path })).toEqual({ server: 'http://b', token: 't1' });
  });

  it('explains what to do when nothing is configured', async () => {
    await expect(resolveContext({}, { WARREN_CONFIG: join(dir, 'none.json') })).rejects.toThrow(/warren up.*warren login/);
  });

  it('names the file when it is not JSON', async () => {
    const path = join(dir, 'bad.json');
    await writeFile(path, '{nope');
    await expect(readContextFile(path)).rejects.toThrow(/bad.json is not valid JSON/);
    expect(await readFile(path, 'utf8')).toBe('{nope');
  });
});
