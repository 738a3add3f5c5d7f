// Which process the kernel's OOM killer killed in a cgroup: the `oom-kill:` and `Killed process` records of the
// kernel log (/dev/kmsg), read on demand when a group's `oom_kill` counter moved.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** One OOM kill as the kernel logged it. */
export interface OomKill {
  /** Host pid of the killed process. */
  pid: number;
  /** Its command name (`comm`, at most 15 characters), e.g. `node`. */
  process: string;
  /** The memory cgroup whose limit was hit (`oom_memcg=`), as the kernel prints it; absent on kernels < 4.19. */
  memoryCgroup?: string;
  /** The memory cgroup of the killed task (`task_memcg=`); absent on kernels < 4.19. */
  taskCgroup?: string;
}

// Linux >= 4.19 (mm/oom_kill.c dump_oom_summary): "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),
// cpuset=...,mems_allowed=0,oom_memcg=/warren/env-1,task_memcg=/warren/env-1,task=tail,pid=1234,uid=0".
const SUMMARY = /oom-kill:.*?(?:oom_memcg=([^,]*),)?task_memcg=([^,]*),task=(.*?),pid=(\d+),/;
// Every version (__oom_kill_process): "Memory cgroup out of memory: Killed process 1234 (tail) total-vm:...".
const KILLED = /Killed process (\d+) \((.*?)\)/;

/**
 * Parses the OOM kills out of kernel log text: /dev/kmsg records (`<prio>,<seq>,<usec>,<flags>;<message>`) or
 * `dmesg` lines, one per line. A summary line and the `Killed process` line of the same pid make one kill.
 * @returns the kills in log order (oldest first).
 */
export function parseOomKills(text: string): OomKill[] {
  const kills: OomKill[] = [];
  for (const line of text.split('\n')) {
    const summary = SUMMARY.exec(line);
    if (summary) {
      const [, memoryCgroup, taskCgroup, process, pid] = summary;
      kills.push({
        pid: Number(pid),
        process: process ?? '',
        ...(memoryCgroup ? { memoryCgroup } : {}),
        ...(taskCgroup ? { taskCgroup } : {}),
      });
      continue;
    }
    const killed = KILLED.exec(line);
    if (!killed) continue;
    const pid = Number(killed[1]);
    // The summary comes first on kernels that print one; the Killed line adds nothing then.
    if (kills.at(-1)?.pid === pid) continue;
    kills.push({ pid, process: killed[2] ?? '' });
  }
  return kills;
}

/**
 * The latest kill inside cgroup `path` (the group's path below the hierarchy root, e.g. `/warren/env-1`): the
 * kernel prints paths from the root of the hierarchy it sees, so a host whose cgroupfs is itself a sub-tree (a
 * container, a cgroup namespace) has more components in front, and a match on the path's end is enough; a kill in
 * a sub-group (the interactive group) counts. Kills the kernel logged without cgroups never match.
 * @returns undefined when no logged kill is in that group.
 */
export function lastOomKillIn(kills: readonly OomKill[], path: string): OomKill | undefined {
  const inGroup = (cgroup: string | undefined) => cgroup !== undefined && (cgroup.endsWith(path) || cgroup.includes(`${path}/`));
  for (let index = kills.length - 1; index >= 0; index--) {
    const kill = kills[index];
    if (kill && (inGroup(kill.taskCgroup) || inGroup(kill.memoryCgroup))) return kill;
  }
  return undefined;
}

/**
 * Reads every record still in the kernel's log buffer from /dev/kmsg (Documentation/ABI/testing/dev-kmsg): one
 * record per read, non-blocking, until EAGAIN; records overwritten while reading (EPIPE) are skipped. Needs root
 * (or CAP_SYSLOG where `dmesg_restrict` is set).
 * @returns the records' text, one per line.
 * @throws the open error (ENOENT, EACCES, EPERM) when the log cannot be read.
 */
export async function readKernelLog(path = '/dev/kmsg'): Promise<string> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const lines: string[] = [];
  const buffer = Buffer.alloc(8192);
  try {
    // Bounded: the buffer holds at most a few MiB of records.
    for (let records = 0; records < 200_000; records++) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(buffer, 0, buffer.length, null));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') break;
        throw error;
      }
      if (bytesRead === 0) break;
      // A record's continuation lines (" KEY=value") follow its first line; only the first carries the message.
      lines.push(buffer.toString('utf8', 0, bytesRead).split('\n')[0] ?? '');
    }
  } finally {
    await handle.close();
  }
  return lines.join('\n');
}
