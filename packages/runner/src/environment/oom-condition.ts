// The OOMKilled condition of an environment, from the OOM kills the backend observed in its running container
// (docs/design/0010-requests-and-limits.md "Memory and OOM").
import type { Condition } from '@warren/api';
import type { ObservedEnvironment } from './backend.js';

/**
 * The `OOMKilled` condition the observed OOM kills call for, or undefined when the written one is right. True
 * (reason `OOMKilled`) names the last process killed when the kernel log still has it, "a process" otherwise; it
 * goes back to False (reason `NoOOMKill`) only when a new container has none, and an environment that never had a
 * kill gets no condition at all.
 */
export function oomCondition(
  conditions: readonly Condition[],
  memory: ObservedEnvironment['memory'],
): Pick<Condition, 'status' | 'reason' | 'message'> | undefined {
  if (!memory) return undefined;
  const written = conditions.find((condition) => condition.type === 'OOMKilled');
  let wanted: Pick<Condition, 'status' | 'reason' | 'message'>;
  if (memory.oomKills > 0) {
    const victim = memory.lastOomKill ? `${memory.lastOomKill.process} (host pid ${memory.lastOomKill.pid})` : 'a process';
    const limit = memory.limitBytes === undefined ? 'its memory limit' : `its memory limit of ${formatMebibytes(memory.limitBytes)}`;
    const count = memory.oomKills === 1 ? '1 process was' : `${memory.oomKills} processes were`;
    wanted = {
      status: 'True',
      reason: 'OOMKilled',
      message: `The OOM killer killed ${victim} when the environment reached ${limit}; ${count} killed since the container started.`,
    };
  } else {
    if (written?.status !== 'True') return undefined;
    wanted = { status: 'False', reason: 'NoOOMKill', message: 'No process was killed for lack of memory since the container started.' };
  }
  if (written && written.status === wanted.status && written.reason === wanted.reason && written.message === wanted.message)
    return undefined;
  return wanted;
}

function formatMebibytes(bytes: number): string {
  const mebibytes = bytes / (1024 * 1024);
  return mebibytes >= 1024 && mebibytes % 1024 === 0 ? `${mebibytes / 1024} GiB` : `${Math.round(mebibytes)} MiB`;
}
