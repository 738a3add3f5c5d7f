/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
import type { Environment } from '@warren/api';
import { getCondition } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { TerminalEnvironmentError } from './backend.js';
import { FakeBackend } from './fake-backend.js';
import { makeEnvironment, reconcilerHarness, withSpec } from './testing.js';

describe('EnvironmentReconciler', () => {
  it('creates an environment up to Running with every condition True and lifecycle commands run once', async () => {
    const { backend, writes, reconciler, signal } = reconcilerHarness();
    const result = await reconciler.reconcile(makeEnvironment(), signal);
    expect(result.status.phase).toBe('Running');
    expect(result.status.observedGeneration).toBe(1);
    expect(result.status.progress).toBeUndefined();
    expect(result.status.runnerId).toBe('r1');
    expect(result.status.commit).toBe('abc123');
    expect(result.status.devcontainer).toMatchObject({
      image: 'example.test/base:1',
      remoteUser: 'vscode',
      workspaceFolder: '/workspaces/repo',
    });
    for (const type of ['ContentReady', 'ImageReady', 'Running', 'LifecycleCommandsSucceeded', 'DevcontainerSupported']) {
      expect(getCondition(result.status.conditions, type)?.status, type).toBe('True');
    }
    expect(writes.map((status) => status.phase)).toContain('Creating');
    const host = backend.host.get('env-1')!;
    expect(host.createRuns).toBe(1);
    expect(host.postStartRuns).toBe(1);

    // Level-triggered: reconciling again changes nothing and writes nothing.
    const before = writes.length;
    const again = await reconciler.reconcile(result, signal);
    expect(again.status.phase).toBe('Running');
    expect(writes.length).toBe(before);
    expect(host.createRuns).toBe(1);
    expect(host.postStartRuns).toBe(1);
  });

  it('stops keeping disk state and starts again running only postStart', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    const running = await reconciler.reconcile(makeEnvironment(), signal);
    const stopped = await reconciler.reconcile(withSpec(running, { desiredPhase: 'Stopped' }), signal);
    expect(stopped.status.phase).toBe('Stopped');
    expect(getCondition(stopped.status.conditions, 'Running')?.status).toBe('False');
    expect(backend.host.get('env-1')?.contentReady).toBe(true);
    expect(backend.host.get('env-1')?.container).toBe('absent');

    const started = await reconciler.reconcile(withSpec(stopped, { desiredPhase: 'Running' }), signal);
    expect(started.status.phase).toBe('Running');
    expect(started.status.observedGeneration).toBe(3);
    const host = backend.host.get('env-1')!;
    expect(host.createRuns).toBe(1);
    expect(host.postStartRuns).toBe(2);
    expect(backend.calls.filter((call) => call.startsWith('prepareContent'))).toHaveLength(1);
    expect(backend.calls.filter((call) => call.startsWith('resolve'))).toHaveLength(1);
  });

  it('deletes every trace and reports Deleted', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    const running = await reconciler.reconcile(makeEnvironment(), signal);
    const deleted = await reconciler.reconcile(withSpec(running, { desiredPhase: 'Deleted' }), signal);
    expect(deleted.status.phase).toBe('Deleted');
    expect(backend.host.has('env-1')).toBe(false);
  });

  it('marks a terminal failure Failed with the condition and does not retry until the generation changes', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    backend.failNext(
      'prepareContent',
      new TerminalEnvironmentError('ContentReady', 'RepositoryNotFound', 'repository https://example.test/repo.git was not found'),
    );
    const failed = await reconciler.reconcile(makeEnvironment(), signal);
    expect(failed.status.phase).toBe('Failed');
    expect(failed.status.message).toMatch(/not found/);
    const condition = getCondition(failed.status.conditions, 'ContentReady');
    expect(condition).toMatchObject({ status: 'False', reason: 'RepositoryNotFound' });

    const calls = backend.calls.length;
    const same = await reconciler.reconcile(failed, signal);
    expect(same.status.phase).toBe('Failed');
    expect(backend.calls.length).toBe(calls);

    const retried = await reconciler.reconcile(withSpec(failed, { source: { git: { url: 'https://example.test/other.git' } } }), signal);
    expect(retried.status.phase).toBe('Running');
    expect(getCondition(retried.status.conditions, 'ContentReady')?.status).toBe('True');
  });

  it('throws on a transient failure and completes on the next attempt from observed state', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    backend.failNext('start', new Error('runc: transient'));
    let partial: Environment | undefined;
    await expect(reconciler.reconcile(makeEnvironment(), signal).then((environment) => (partial = environment))).rejects.toThrow(
      'runc: transient',
    );
    expect(partial).toBeUndefined();
    // The retry gets the object as it was (the queue holds the last known object): content is not cloned twice.
    const result = await reconciler.reconcile(makeEnvironment(), signal);
    expect(result.status.phase).toBe('Running');
    expect(backend.calls.filter((call) => call.startsWith('prepareContent'))).toHaveLength(1);
  });

  it('keeps a Running environment whose lifecycle command failed, with the condition False', async () => {
    const backend = new FakeBackend();
    backend.createOutcome = { succeeded: false, message: 'postCreateCommand exited with code 3' };
    const { reconciler, signal } = reconcilerHarness(backend);
    const result = await reconciler.reconcile(makeEnvironment(), signal);
    expect(result.status.phase).toBe('Running');
    expect(getCondition(result.status.conditions, 'LifecycleCommandsSucceeded')).toMatchObject({
      status: 'False',
      reason: 'LifecycleCommandFailed',
    });
    expect(getCondition(result.status.conditions, 'LifecycleCommandsSucceeded')?.message).toMatch(/code 3/);
  });

  it('names unsupported devcontainer properties in a False DevcontainerSupported condition', async () => {
    const backend = new FakeBackend();
    backend.resolution = {
      ...backend.resolution,
      ports: [{ port: 3000, label: 'web' }],
      unsupported: [{ property: 'mounts', message: 'extra mounts are not supported', source: '.devcontainer/devcontainer.json' }],
    };
    const { reconciler, signal } = reconcilerHarness(backend);
    const result = await reconciler.reconcile(makeEnvironment(), signal);
    expect(result.status.phase).toBe('Running');
    const condition = getCondition(result.status.conditions, 'DevcontainerSupported');
    expect(condition?.status).toBe('False');
    expect(condition?.message).toContain('mounts');
    expect(result.status.ports).toEqual([{ port: 3000, label: 'web', visibility: 'Owner', source: 'Devcontainer' }]);
  });

  it('adopts a container that is already running after a runner restart without re-running lifecycle commands', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    const running = await reconciler.reconcile(makeEnvironment(), signal);
    // A new reconciler (new runner process) sees the same host.
    const restarted = reconcilerHarness(backend);
    const adopted = await restarted.reconciler.reconcile(running, signal);
    expect(adopted.status.phase).toBe('Running');
    expect(restarted.writes).toHaveLength(0);
    expect(backend.host.get('env-1')?.starts).toBe(1);
    expect(backend.host.get('env-1')?.postStartRuns).toBe(1);
  });

  it('reports progress while a step runs', async () => {
    const { writes, reconciler, signal } = reconcilerHarness();
    await reconciler.reconcile(makeEnvironment(), signal);
    expect(writes.some((status) => status.progress?.step === 'image')).toBe(true);
  });

  it('writes status once for a start whose steps all finish before they would be announced', async () => {
    const { writes, reconciler, signal } = reconcilerHarness(new FakeBackend(), { announceDelayMs: 60_000 });
    const result = await reconciler.reconcile(makeEnvironment(), signal);
    expect(writes).toHaveLength(1);
    expect(result.status.phase).toBe('Running');
    expect(result.status.progress).toBeUndefined();
    expect(result.status.commit).toBe('abc123');
    for (const type of ['ContentReady', 'ImageReady', 'Running', 'LifecycleCommandsSucceeded', 'DevcontainerSupported']) {
      expect(getCondition(result.status.conditions, type)?.status, type).toBe('True');
    }
    const stopped = await reconciler.reconcile(withSpec(result, { desiredPhase: 'Stopped' }), signal);
    expect(stopped.status.phase).toBe('Stopped');
    expect(writes).toHaveLength(2);
    const started = await reconciler.reconcile(withSpec(stopped, { desiredPhase: 'Running' }), signal);
    expect(started.status.phase).toBe('Running');
    expect(writes).toHaveLength(3);
  });

  it('announces a step that is still running after the announce delay, with the results staged before it', async () => {
    const backend = new FakeBackend();
    let release: () => void = () => {};
    const resolve = backend.resolve.bind(backend);
    backend.resolve = async (...args) => {
      await new Promise<void>((done) => (release = done));
      return resolve(...args);
    };
    const { writes, reconciler, signal } = reconcilerHarness(backend, { announceDelayMs: 1 });
    const running = reconciler.reconcile(makeEnvironment(), signal);
    for (let attempt = 0; attempt < 200 && writes.length === 0; attempt++) await new Promise((done) => setTimeout(done, 5));
    expect(writes[0]).toMatchObject({ phase: 'Creating', progress: { step: 'image' } });
    expect(getCondition(writes[0]!.conditions, 'ContentReady')?.status).toBe('True');
    release();
    expect((await running).status.phase).toBe('Running');
    expect(writes.at(-1)?.progress).toBeUndefined();
  });

  it('says in status.message why a transient failure stalls progress, and clears it once Running', async () => {
    const backend = new FakeBackend();
    backend.failNext('start', new Error('runc: permission denied'));
    const { writes, reconciler, signal } = reconcilerHarness(backend);
    await expect(reconciler.reconcile(makeEnvironment(), signal)).rejects.toThrow('runc: permission denied');
    expect(writes.at(-1)?.message).toBe('retrying after an error: runc: permission denied');
    const result = await reconciler.reconcile(makeEnvironment(), signal);
    expect(result.status.phase).toBe('Running');
    expect(result.status.message).toBeUndefined();
  });

  it('writes nothing after a failed pass returns', async () => {
    const backend = new FakeBackend();
    backend.failNext('start', new Error('runc: transient'));
    const { writes, reconciler, signal } = reconcilerHarness(backend, { announceDelayMs: 20 });
    await expect(reconciler.reconcile(makeEnvironment(), signal)).rejects.toThrow('runc: transient');
    const count = writes.length;
    await new Promise((done) => setTimeout(done, 60));
    expect(writes).toHaveLength(count);
  });

  it('prepares the host while cloning on a create only, and retries (start then makes what is missing) when that fails', async () => {
    const backend = new FakeBackend();
    const prepared: string[] = [];
    let failNext = true;
    Object.assign(backend, {
      prepareHost: async (environment: Environment) => {
        prepared.push(environment.metadata.id);
        if (failNext) {
          failNext = false;
          throw new Error('ip: transient');
        }
      },
    });
    const { reconciler, signal } = reconcilerHarness(backend);
    await expect(reconciler.reconcile(makeEnvironment(), signal)).rejects.toThrow('ip: transient');
    const running = await reconciler.reconcile(makeEnvironment(), signal);
    expect(running.status.phase).toBe('Running');
    // The clone of the failed pass is kept, so the retry goes straight on; start makes the host objects.
    expect(prepared).toEqual(['env-1']);
    expect(backend.calls.filter((call) => call.startsWith('prepareContent'))).toHaveLength(1);
    const stopped = await reconciler.reconcile(withSpec(running, { desiredPhase: 'Stopped' }), signal);
    const started = await reconciler.reconcile(withSpec(stopped, { desiredPhase: 'Running' }), signal);
    expect(started.status.phase).toBe('Running');
    expect(prepared).toHaveLength(1);
  });

  it('stops an environment that was never created as Stopped without touching the host', async () => {
    const { backend, reconciler, signal } = reconcilerHarness();
    const result = await reconciler.reconcile(withSpec(makeEnvironment(), { desiredPhase: 'Stopped' }), signal);
    expect(result.status.phase).toBe('Stopped');
    expect(backend.calls).toEqual([]);
  });
});
