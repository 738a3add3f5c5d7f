// Unit tests of observeOomKills on fake cgroupfs trees (v1 memory.oom_control, v2 memory.events) and a fake kernel
// log: the count, the process named from the log's record of this group, the log read once per new kill.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@warren/base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CgroupManager } from '../linux/index.js';
import type { BackendContext } from './context.js';
import { observeOomKills } from './oom.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-oom-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const LOG = [
  '6,10,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=x,mems_allowed=0,oom_memcg=/warren/env-2,task_memcg=/warren/env-2,task=java,pid=70,uid=0',
  '3,11,1,-;Memory cgroup out of memory: Killed process 70 (java) total-vm:1kB',
  '6,12,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=x,mems_allowed=0,oom_memcg=/warren/env-1,task_memcg=/warren/env-1,task=tail,pid=81,uid=100000',
  '3,13,2,-;Memory cgroup out of memory: Killed process 81 (tail) total-vm:1kB',
].join('\n');

function context(cgroups: CgroupManager): BackendContext {
  return { cgroups, logger: silentLogger } as unknown as BackendContext;
}

describe('observeOomKills', () => {
  it('reads v1 memory.oom_control and names the process from the log once per new kill', async () => {
    const group = join(root, 'memory', 'warren', 'env-1');
    await mkdir(group, { recursive: true });
    await writeFile(join(group, 'memory.limit_in_bytes'), `${64 * 1024 * 1024}\n`);
    await writeFile(join(group, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n');
    const backend = context(new CgroupManager({ version: 'v1', root }));
    let reads = 0;
    const readLog = () => {
      reads++;
      return Promise.resolve(LOG);
    };
    expect(await observeOomKills(backend, 'env-1', 'start-1', { readLog })).toEqual({ oomKills: 0, limitBytes: 64 * 1024 * 1024 });
    expect(reads).toBe(0);

    await writeFile(join(group, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 1\noom_kill 1\n');
    const killed = { oomKills: 1, limitBytes: 64 * 1024 * 1024, lastOomKill: { pid: 81, process: 'tail' } };
    expect(await observeOomKills(backend, 'env-1', 'start-1', { readLog })).toEqual(killed);
    expect(await observeOomKills(backend, 'env-1', 'start-1', { readLog })).toEqual(killed);
    expect(reads).toBe(1);
  });

  it('reads v2 memory.events and says nothing of the process when the log has no record of this group', async () => {
    const group = join(root, 'warren', 'env-3');
    await mkdir(group, { recursive: true });
    await writeFile(join(group, 'memory.events'), 'low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n');
    const backend = context(new CgroupManager({ version: 'v2', root }));
    expect(await observeOomKills(backend, 'env-3', 'start-1', { readLog: () => Promise.resolve(LOG) })).toEqual({ oomKills: 2 });
    // An unreadable log gives the count alone, not an error.
    expect(await observeOomKills(backend, 'env-3', 'start-2', { readLog: () => Promise.reject(new Error('EPERM')) })).toEqual({
      oomKills: 2,
    });
  });

  it('gives undefined without a group or without the counter', async () => {
    await mkdir(join(root, 'warren', 'env-4'), { recursive: true });
    const backend = context(new CgroupManager({ version: 'v2', root }));
    expect(await observeOomKills(backend, 'env-4', 'start-1')).toBeUndefined();
    expect(await observeOomKills(backend, 'env-5', 'start-1')).toBeUndefined();
  });
});
