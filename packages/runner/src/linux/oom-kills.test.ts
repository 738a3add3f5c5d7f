// Unit tests of the kernel log's OOM records: parsing (/dev/kmsg and dmesg forms, old kernels without a summary),
// matching a cgroup path, and reading a log file record by record.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lastOomKillIn, parseOomKills, readKernelLog } from './oom-kills.js';

// As this host's kernel (6.x) logs a kill in a container's memory cgroup (v1 paths), in /dev/kmsg's record form.
const KMSG = [
  '6,1201,3850715000,-;dd invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0',
  '6,1240,3850715017,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=env-1,mems_allowed=0,oom_memcg=/warren/env-1,task_memcg=/warren/env-1/interactive,task=tail,pid=9670,uid=100000',
  '3,1241,3850715031,-;Memory cgroup out of memory: Killed process 9670 (tail) total-vm:101280kB, anon-rss:32512kB, file-rss:1664kB, shmem-rss:0kB, UID:100000 pgtables:112kB oom_score_adj:0',
  '6,1300,3900000000,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=env-10,mems_allowed=0,oom_memcg=/warren/env-10,task_memcg=/warren/env-10,task=node,pid=9800,uid=100000',
  '3,1301,3900000010,-;Memory cgroup out of memory: Killed process 9800 (node) total-vm:1kB',
].join('\n');

describe('parseOomKills', () => {
  it('joins the summary and the Killed line of one kill', () => {
    expect(parseOomKills(KMSG)).toEqual([
      { pid: 9670, process: 'tail', memoryCgroup: '/warren/env-1', taskCgroup: '/warren/env-1/interactive' },
      { pid: 9800, process: 'node', memoryCgroup: '/warren/env-10', taskCgroup: '/warren/env-10' },
    ]);
  });

  it('reads dmesg lines and kernels older than 4.19 (no summary: no cgroup)', () => {
    const text =
      '[ 12.5] Memory cgroup out of memory: Kill process 1 (init) score 0 or sacrifice child\n[ 12.6] Killed process 77 (cc1plus) total-vm:1kB';
    expect(parseOomKills(text)).toEqual([{ pid: 77, process: 'cc1plus' }]);
  });

  it('finds nothing in a log without kills', () => {
    expect(parseOomKills('6,1,1,-;Linux version 6.18\n')).toEqual([]);
  });
});

describe('lastOomKillIn', () => {
  const kills = parseOomKills(KMSG);

  it('matches the group and its sub-groups, not a group whose name starts the same', () => {
    expect(lastOomKillIn(kills, '/warren/env-1')?.process).toBe('tail');
    expect(lastOomKillIn(kills, '/warren/env-10')?.process).toBe('node');
    expect(lastOomKillIn(kills, '/warren/env-2')).toBeUndefined();
  });

  it('matches a path the kernel prints below a container host cgroup', () => {
    const nested = parseOomKills(
      'oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/kubepods/pod1/abc/warren/env-1,task_memcg=/kubepods/pod1/abc/warren/env-1,task=sh,pid=5,uid=0',
    );
    expect(lastOomKillIn(nested, '/warren/env-1')).toEqual({
      pid: 5,
      process: 'sh',
      memoryCgroup: '/kubepods/pod1/abc/warren/env-1',
      taskCgroup: '/kubepods/pod1/abc/warren/env-1',
    });
  });

  it('takes the latest of several kills', () => {
    const twice = parseOomKills(`${KMSG}\n${KMSG.replaceAll('9670', '9999').replaceAll('task=tail', 'task=make')}`);
    expect(lastOomKillIn(twice, '/warren/env-1')).toMatchObject({ pid: 9999, process: 'make' });
  });

  it('never matches kills logged without cgroups', () => {
    expect(lastOomKillIn([{ pid: 1, process: 'x' }], '/warren/env-1')).toBeUndefined();
  });
});

describe('readKernelLog', () => {
  it('reads a file as one record per read until its end', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-kmsg-'));
    try {
      await writeFile(join(dir, 'kmsg'), '6,1,1,-;one\n');
      expect(await readKernelLog(join(dir, 'kmsg'))).toBe('6,1,1,-;one');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('throws when the log cannot be opened', async () => {
    await expect(readKernelLog('/nonexistent/kmsg')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
