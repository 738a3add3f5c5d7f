// Unit tests of the OOMKilled condition: the reconciler sets it from the OOM kills the (fake) backend observes, names
// the process, writes once per change, and a new container without kills turns it False.
import { getCondition } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { oomCondition } from './oom-condition.js';
import { makeEnvironment, reconcilerHarness } from './testing.js';

describe('OOMKilled condition', () => {
  it('is absent while nothing was killed, True naming the process after a kill, and written once per change', async () => {
    const { backend, writes, reconciler, signal } = reconcilerHarness();
    let environment = await reconciler.reconcile(makeEnvironment(), signal);
    expect(environment.status.phase).toBe('Running');
    expect(getCondition(environment.status.conditions, 'OOMKilled')).toBeUndefined();

    backend.host.get('env-1')!.memory = { oomKills: 1, limitBytes: 64 * 1024 * 1024, lastOomKill: { pid: 4242, process: 'tail' } };
    const before = writes.length;
    environment = await reconciler.reconcile(environment, signal);
    expect(writes.length).toBe(before + 1);
    expect(getCondition(environment.status.conditions, 'OOMKilled')).toMatchObject({
      status: 'True',
      reason: 'OOMKilled',
      message:
        'The OOM killer killed tail (host pid 4242) when the environment reached its memory limit of 64 MiB; 1 process was killed since the container started.',
    });
    expect(environment.status.phase).toBe('Running');

    // Level-triggered: the same observation writes nothing.
    environment = await reconciler.reconcile(environment, signal);
    expect(writes.length).toBe(before + 1);

    // A second kill whose record the kernel log no longer has: "a process", never a guess.
    backend.host.get('env-1')!.memory = { oomKills: 2, limitBytes: 4 * 1024 ** 3 };
    environment = await reconciler.reconcile(environment, signal);
    expect(getCondition(environment.status.conditions, 'OOMKilled')?.message).toBe(
      'The OOM killer killed a process when the environment reached its memory limit of 4 GiB; 2 processes were killed since the container started.',
    );
  });

  it('turns False when a new container has no kill', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    let environment = await reconciler.reconcile(makeEnvironment(), signal);
    backend.host.get('env-1')!.memory = { oomKills: 3 };
    environment = await reconciler.reconcile(environment, signal);
    expect(getCondition(environment.status.conditions, 'OOMKilled')?.status).toBe('True');

    environment = await reconciler.reconcile({ ...environment, spec: { ...environment.spec, desiredPhase: 'Stopped' } }, signal);
    // Stopped: the last kill stays visible.
    expect(getCondition(environment.status.conditions, 'OOMKilled')?.status).toBe('True');
    environment = await reconciler.reconcile({ ...environment, spec: { ...environment.spec, desiredPhase: 'Running' } }, signal);
    expect(getCondition(environment.status.conditions, 'OOMKilled')).toMatchObject({ status: 'False', reason: 'NoOOMKill' });
  });
});

describe('oomCondition', () => {
  it('asks for nothing without an observation or without a kill ever', () => {
    expect(oomCondition([], undefined)).toBeUndefined();
    expect(oomCondition([], { oomKills: 0 })).toBeUndefined();
  });

  it('says "its memory limit" when the limit is unknown', () => {
    expect(oomCondition([], { oomKills: 1 })?.message).toBe(
      'The OOM killer killed a process when the environment reached its memory limit; 1 process was killed since the container started.',
    );
  });
});
