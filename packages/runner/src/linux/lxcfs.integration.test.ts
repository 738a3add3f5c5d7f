// The runner's lxcfs with the real daemon (Debian package lxcfs) and /dev/fuse: start, take over a healthy one,
// replace a killed one (dead FUSE mount, stale pidfile), leave another runner's alone, and stop without traces.
// Needs root, lxcfs and /dev/fuse.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMount, readMountInfo } from './idmap.js';
import { type LxcfsDaemon, isLxcfsCommandLine, lxcfsPaths, startLxcfs } from './lxcfs.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function started(dir: string): Promise<LxcfsDaemon> {
  const result = await startLxcfs({ dir });
  if ('unavailable' in result) throw new Error(`lxcfs unavailable: ${result.unavailable.reason}: ${result.unavailable.message}`);
  return result.daemon;
}

describe('startLxcfs', () => {
  let base: string;
  const daemons: LxcfsDaemon[] = [];

  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'warren-lxcfs-'));
  });

  afterAll(async () => {
    for (const daemon of daemons) await daemon.stop();
    await rm(base, { recursive: true, force: true });
  });

  it('serves the views, is taken over while healthy, replaced after a kill, and stops without a process or mount', async () => {
    const dir = join(base, 'a');
    const { root, pidFile } = lxcfsPaths(dir);
    const first = await started(dir);
    daemons.push(first);
    expect(first.adopted).toBe(false);
    expect(first.views.paths).toEqual(expect.arrayContaining(['/proc/meminfo', '/proc/cpuinfo', '/proc/stat', '/proc/uptime']));
    expect(findMount(await readMountInfo(), root)?.fsType).toBe('fuse.lxcfs');
    expect(Number(await readFile(pidFile, 'utf8'))).toBe(first.pid);
    expect(await readFile(join(root, 'proc/meminfo'), 'utf8')).toMatch(/^MemTotal:\s+\d+ kB/);

    // A second start on the same dir (a restarted runner) takes the healthy daemon over.
    const again = await started(dir);
    expect(again).toMatchObject({ pid: first.pid, adopted: true });

    // A killed daemon leaves a dead mount (ENOTCONN) and its pidfile: the next start replaces both.
    process.kill(first.pid, 'SIGKILL');
    for (let tries = 0; alive(first.pid) && tries < 200; tries++) await new Promise((resolve) => setTimeout(resolve, 10));
    await expect(readFile(join(root, 'proc/meminfo'), 'utf8')).rejects.toThrow(/ENOTCONN/);
    const replaced = await started(dir);
    daemons.push(replaced);
    expect(replaced.adopted).toBe(false);
    expect(replaced.pid).not.toBe(first.pid);
    expect(await readFile(join(root, 'proc/meminfo'), 'utf8')).toMatch(/^MemTotal:/);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint === root)).toHaveLength(1);

    await replaced.stop();
    expect(alive(replaced.pid)).toBe(false);
    expect(findMount(await readMountInfo(), root)).toBeUndefined();
    await expect(readFile(pidFile)).rejects.toThrow(/ENOENT/);
  });

  it("never signals another runner's lxcfs named in a stale pidfile", async () => {
    const other = await started(join(base, 'other'));
    daemons.push(other);
    const dir = join(base, 'mine');
    const { pidFile } = lxcfsPaths(dir);
    await rm(dir, { recursive: true, force: true });
    await started(dir).then((daemon) => daemon.stop());
    // The pidfile names the other runner's daemon (e.g. a recycled pid): it is not ours, so it is left alone.
    await writeFile(pidFile, `${other.pid}\n`);
    const mine = await started(dir);
    daemons.push(mine);
    expect(mine.pid).not.toBe(other.pid);
    expect(alive(other.pid)).toBe(true);
    await mine.stop();
    expect(alive(other.pid)).toBe(true);
  });
});

describe('startLxcfs failing', () => {
  it('reports LxcfsFailed with the log tail when lxcfs exits instead of mounting', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-lxcfs-fail-'));
    try {
      const fake = join(dir, 'lxcfs');
      await writeFile(fake, '#!/bin/sh\necho "fuse: device not found" >&2\nexit 1\n', { mode: 0o755 });
      const result = await startLxcfs({ dir: join(dir, 'state'), binary: fake });
      expect(result).toMatchObject({
        unavailable: { reason: 'LxcfsFailed', message: expect.stringContaining('fuse: device not found') as unknown },
      });
      expect(findMount(await readMountInfo(), lxcfsPaths(join(dir, 'state')).root)).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('isLxcfsCommandLine', () => {
  it('matches lxcfs serving exactly that root', () => {
    const cmdline = ['/usr/bin/lxcfs', '--foreground', '--pidfile', '/d/lxcfs/lxcfs.pid', '/d/lxcfs/root', ''].join('\0');
    expect(isLxcfsCommandLine(cmdline, '/d/lxcfs/root')).toBe(true);
    expect(isLxcfsCommandLine(cmdline, '/e/lxcfs/root')).toBe(false);
    expect(isLxcfsCommandLine(['/bin/sleep', '/d/lxcfs/root'].join('\0'), '/d/lxcfs/root')).toBe(false);
    expect(isLxcfsCommandLine('', '/d/lxcfs/root')).toBe(false);
  });
});
