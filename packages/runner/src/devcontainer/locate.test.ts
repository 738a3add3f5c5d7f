import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidError } from '@warren/base';
import { loadDevcontainerConfig, locateDevcontainerConfig } from './locate.js';

let repo: string;

beforeEach(async () => {
  repo = await mkdtemp(path.join(tmpdir(), 'warren-locate-'));
});
afterEach(async () => {
  await rm(repo, { recursive: true, force: true });
});

async function put(relative: string, content = '{}') {
  await mkdir(path.dirname(path.join(repo, relative)), { recursive: true });
  await writeFile(path.join(repo, relative), content);
}

describe('locateDevcontainerConfig', () => {
  it('returns undefined when the repository has no config', async () => {
    expect(await locateDevcontainerConfig(repo)).toBeUndefined();
    await mkdir(path.join(repo, '.devcontainer', 'empty'), { recursive: true });
    expect(await locateDevcontainerConfig(repo)).toBeUndefined();
  });

  it('prefers .devcontainer/devcontainer.json, then .devcontainer.json, then a single subfolder', async () => {
    await put('.devcontainer/python/devcontainer.json');
    expect(await locateDevcontainerConfig(repo)).toEqual({
      path: path.join(repo, '.devcontainer/python/devcontainer.json'),
      relativePath: '.devcontainer/python/devcontainer.json',
    });
    await put('.devcontainer.json');
    expect((await locateDevcontainerConfig(repo))?.relativePath).toBe('.devcontainer.json');
    await put('.devcontainer/devcontainer.json');
    expect((await locateDevcontainerConfig(repo))?.relativePath).toBe('.devcontainer/devcontainer.json');
  });

  it('lists several subfolder configs and asks for spec.devcontainer.path', async () => {
    await put('.devcontainer/python/devcontainer.json');
    await put('.devcontainer/node/devcontainer.json');
    const located = locateDevcontainerConfig(repo);
    await expect(located).rejects.toBeInstanceOf(InvalidError);
    await expect(located).rejects.toThrow(
      'the repository has 2 devcontainer configurations (.devcontainer/node/devcontainer.json, .devcontainer/python/devcontainer.json); set spec.devcontainer.path',
    );
  });

  it('uses spec.devcontainer.path and fails when it is missing or outside', async () => {
    await put('.devcontainer/devcontainer.json');
    await put('tools/dev.json');
    expect(await locateDevcontainerConfig(repo, './tools/dev.json')).toEqual({
      path: path.join(repo, 'tools/dev.json'),
      relativePath: 'tools/dev.json',
    });
    await expect(locateDevcontainerConfig(repo, 'missing.json')).rejects.toThrow(/"missing.json" does not exist/);
    await expect(locateDevcontainerConfig(repo, 'tools')).rejects.toThrow(/does not exist in the repository \(or is not a file\)/);
    await expect(locateDevcontainerConfig(repo, '../etc/passwd')).rejects.toThrow(/must be a path inside the repository/);
    await expect(locateDevcontainerConfig(repo, '/etc/passwd')).rejects.toThrow(/must be a path inside the repository/);
  });

  it('ignores a symlink that points outside the repository', async () => {
    const outside = await mkdtemp(path.join(tmpdir(), 'warren-outside-'));
    try {
      await writeFile(path.join(outside, 'secret.json'), '{}');
      await mkdir(path.join(repo, '.devcontainer'));
      await symlink(path.join(outside, 'secret.json'), path.join(repo, '.devcontainer', 'devcontainer.json'));
      expect(await locateDevcontainerConfig(repo)).toBeUndefined();
      await expect(locateDevcontainerConfig(repo, '.devcontainer/devcontainer.json')).rejects.toThrow(/does not exist/);
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe('loadDevcontainerConfig', () => {
  it('parses the located file and names it by its repository-relative path', async () => {
    expect(await loadDevcontainerConfig(repo)).toBeUndefined();
    await put('.devcontainer/devcontainer.json', '{\n  // dev\n  "image": "node:20",\n}');
    expect(await loadDevcontainerConfig(repo)).toEqual({
      source: '.devcontainer/devcontainer.json',
      config: { image: 'node:20' },
      unsupported: [],
      warnings: [],
    });
    await put('.devcontainer/devcontainer.json', '{"image": 1}');
    await expect(loadDevcontainerConfig(repo)).rejects.toThrow('.devcontainer/devcontainer.json:1:11: image:');
  });
});
