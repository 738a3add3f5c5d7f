// Real cgroupfs: limits written by CgroupManager bite processes placed in the group. Needs root.
// Groups live under a per-run parent (warren-test-<pid>) so the test can remove the parent too.
import type { ChildProcess } from 'node:child_process';
import { access, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CGROUP_ROOT, CgroupManager } from './cgroups.js';
import { spawnLogged } from './exec.js';

const PARENT = `warren-test-${process.pid}`;
let manager: CgroupManager;

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts `sh -c script` that blocks on `read` until it has been moved into `group`, then lets it run.
 * @returns how the shell ended.
 */
async function runInGroup(group: string, script: string): Promise<Finished> {
  const child: ChildProcess = spawnLogged(['sh', '-c', `read go; ${script}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const finished = new Promise<Finished>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  try {
    await manager.addProcess(group, child.pid!);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  child.stdin?.end('go\n');
  return finished;
}

async function procsOf(group: string): Promise<number[]> {
  const pidsDir = manager.version === 'v1' ? join(CGROUP_ROOT, 'pids', PARENT, group) : join(CGROUP_ROOT, PARENT, group);
  try {
    const text = await readFile(join(pidsDir, 'cgroup.procs'), 'utf8');
    return text.split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Kills the processes this test put into `group` (by pid) and waits until the group is empty. */
async function emptyGroup(group: string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const pids = await procsOf(group);
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`cgroup ${group} did not empty`);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('CgroupManager on the real cgroup filesystem (root)', () => {
  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test needs root to create cgroups');
    manager = await CgroupManager.detect({ parent: PARENT });
  });

  afterAll(async () => {
    for (const group of await manager.list()) {
      await emptyGroup(group);
      await manager.remove(group);
    }
    expect(await manager.removeParent()).toBe(true);
    const leftovers: string[] = [];
    for (const entry of await readdir(CGROUP_ROOT)) {
      if (await exists(join(CGROUP_ROOT, entry, PARENT))) leftovers.push(join(CGROUP_ROOT, entry, PARENT));
    }
    if (await exists(join(CGROUP_ROOT, PARENT))) leftovers.push(join(CGROUP_ROOT, PARENT));
    expect(leftovers).toEqual([]);
  });

  it('writes the limits the kernel reads back', async () => {
    await manager.create('limits', { cpuMillicores: 500, memoryBytes: 64 * 2 ** 20, pids: 16 });
    if (manager.version === 'v1') {
      const file = (controller: string, name: string): Promise<string> =>
        readFile(join(CGROUP_ROOT, controller, PARENT, 'limits', name), 'utf8').then((text) => text.trim());
      expect(await file('cpu', 'cpu.cfs_quota_us')).toBe('50000');
      expect(await file('cpu', 'cpu.cfs_period_us')).toBe('100000');
      expect(await file('memory', 'memory.limit_in_bytes')).toBe(String(64 * 2 ** 20));
      if (await exists(join(CGROUP_ROOT, 'memory', 'memory.memsw.limit_in_bytes'))) {
        expect(await file('memory', 'memory.memsw.limit_in_bytes')).toBe(String(64 * 2 ** 20));
      }
      expect(await file('pids', 'pids.max')).toBe('16');
      expect((await file('cpuset', 'cpuset.cpus')).length).toBeGreaterThan(0);
    } else {
      const file = (name: string): Promise<string> =>
        readFile(join(CGROUP_ROOT, PARENT, 'limits', name), 'utf8').then((text) => text.trim());
      expect(await file('cpu.max')).toBe('50000 100000');
      expect(await file('memory.max')).toBe(String(64 * 2 ** 20));
      expect(await file('pids.max')).toBe('16');
    }
    // Raising and then lowering memory keeps memsw >= memory at every step (the kernel would refuse otherwise).
    await manager.update('limits', { memoryBytes: 256 * 2 ** 20, swapBytes: 0, pids: 16 });
    await manager.update('limits', { memoryBytes: 32 * 2 ** 20, pids: 16 });
    await manager.update('limits', {});
    expect(await manager.list()).toContain('limits');
    expect(await manager.remove('limits')).toBe(true);
    expect(await manager.remove('limits')).toBe(false);
  });

  it('pids.max stops forks beyond the limit', async () => {
    await manager.create('pids', { pids: 16 });
    const result = await runInGroup('pids', 'i=0; while [ $i -lt 40 ]; do sleep 120 >/dev/null 2>&1 & i=$((i+1)); done; echo all-forked');
    expect(result.stdout).not.toContain('all-forked');
    expect(result.stderr).toMatch(/fork/i);
    const stats = await manager.stats('pids');
    expect(stats.pids).toBeGreaterThan(0);
    expect(stats.pids).toBeLessThanOrEqual(16);
    // remove() kills nothing: a group with processes is refused.
    await expect(manager.remove('pids')).rejects.toThrow(/still has processes/);
    await emptyGroup('pids');
    expect(await manager.remove('pids')).toBe(true);
  });

  it('the memory limit OOM-kills a process that exceeds it', async () => {
    await manager.create('memory', { memoryBytes: 32 * 2 ** 20, pids: 64 });
    const result = await runInGroup('memory', 'exec dd if=/dev/zero of=/dev/null bs=96M count=1');
    expect(result.signal).toBe('SIGKILL');
    const stats = await manager.stats('memory');
    expect(stats.oomKills).toBeGreaterThanOrEqual(1);
    expect(stats.cpuUsageNanoseconds).toBeGreaterThan(0);
    expect(stats.memoryPeakBytes ?? stats.memoryUsageBytes).toBeGreaterThan(0);
    await emptyGroup('memory');
    expect(await manager.remove('memory')).toBe(true);
    expect(await manager.list()).toEqual([]);
  });
});
