// Controllers tested by their end state on a real (PGlite) store with a manual clock and short intervals.
import { getCondition, type Environment } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SqlStore } from '../storage/index.js';
import { closeSharedPglite, openTestStore, type TestStore } from '../storage/testing.js';
import { runControllers } from './manager.js';
import { chooseRunner } from './scheduler.js';
import { ManualClock, createClass, createEnvironment, createRunner, eventually } from './testing.js';

afterAll(closeSharedPglite);

describe('controllers', () => {
  let test: TestStore;
  let store: SqlStore;
  let clock: ManualClock;
  let stop: AbortController;
  let running: Promise<void> | undefined;

  const start = () => {
    stop = new AbortController();
    running = runControllers(
      { store, logger: silentLogger, clock, checkIntervalMs: 25, resyncIntervalMs: 300, runnerHeartbeatTimeoutSeconds: 30 },
      stop.signal,
    );
  };
  const halt = async () => {
    stop.abort();
    await running;
    running = undefined;
  };
  const environmentWhere = (id: string, predicate: (environment: Environment) => boolean, describe: string) =>
    eventually(async () => {
      const environment = await store.get('Environment', id);
      return environment && predicate(environment) ? environment : undefined;
    }, describe);

  beforeEach(async () => {
    test = await openTestStore('pglite');
    store = test.store;
    clock = new ManualClock();
    await createClass(store, 'default', 1000, 2 ** 30);
  });
  afterEach(async () => {
    if (running) await halt();
    await test.cleanup();
  });

  it('schedules to an active runner, and explains why not while there is none', async () => {
    start();
    const environment = await createEnvironment(store, 'waiting');
    const waiting = await environmentWhere(
      environment.metadata.id,
      (each) => getCondition(each.status.conditions, 'Scheduled')?.status === 'False',
      'Scheduled=False',
    );
    expect(getCondition(waiting.status.conditions, 'Scheduled')?.reason).toBe('NoRunnerAvailable');
    expect(getCondition(waiting.status.conditions, 'Scheduled')?.message).toContain('no active runner');
    expect(waiting.status.runnerId).toBeUndefined();
    await createRunner(store, 'inactive', { phase: 'Inactive' });
    await createRunner(store, 'cordoned', { unschedulable: true });
    const runner = await createRunner(store, 'host-1');
    const scheduled = await environmentWhere(environment.metadata.id, (each) => each.status.runnerId !== undefined, 'runnerId');
    expect(scheduled.status.runnerId).toBe(runner.metadata.id);
    expect(scheduled.status.phase).toBe('Pending');
    expect(getCondition(scheduled.status.conditions, 'Scheduled')).toMatchObject({ status: 'True', reason: 'RunnerAssigned' });
  });

  it('respects runner capacity and schedules waiting environments when room frees up', async () => {
    await createRunner(store, 'small', { capacity: { cpuMillicores: 2000, memoryBytes: 2 ** 32, environments: 1 } });
    start();
    const first = await createEnvironment(store, 'first');
    await environmentWhere(first.metadata.id, (each) => each.status.runnerId !== undefined, 'first scheduled');
    const second = await createEnvironment(store, 'second');
    const full = await environmentWhere(
      second.metadata.id,
      (each) => getCondition(each.status.conditions, 'Scheduled')?.status === 'False',
      'second waiting',
    );
    expect(getCondition(full.status.conditions, 'Scheduled')?.reason).toBe('NoRunnerAvailable');
    expect(getCondition(full.status.conditions, 'Scheduled')?.message).toContain('no runner has room');
    // Stopping the first frees its slot (stopped environments keep their disk but no CPU, memory or slot).
    await store.update('Environment', first.metadata.id, (current) => ({ ...current, spec: { ...current.spec, desiredPhase: 'Stopped' } }));
    const placed = await environmentWhere(second.metadata.id, (each) => each.status.runnerId !== undefined, 'second scheduled');
    expect(getCondition(placed.status.conditions, 'Scheduled')?.status).toBe('True');
  });

  it('places by requests against allocatable × overbooking, never by limits', async () => {
    const GiB = 1024 ** 3;
    // A 2-core host that reserves 250m and 1 GiB for Warren and overbooks CPU requests 4 times.
    await createRunner(store, 'overbooked', {
      capacity: { cpuMillicores: 2000, memoryBytes: 24 * GiB, environments: 50 },
      allocatable: { cpuMillicores: 1750, memoryBytes: 23 * GiB, environments: 50 },
      overbooking: { cpu: 4, memory: 1 },
    });
    // Each may burst to both cores and 4 GiB, and is guaranteed 500m and 1 GiB: 1750 × 4 / 500 = 14 fit.
    await createClass(store, 'bursty', 2000, 4 * GiB, { cpuMillicores: 500, memoryBytes: GiB });
    start();
    const created: Environment[] = [];
    for (let index = 0; index < 15; index++) created.push(await createEnvironment(store, `bursty-${index}`, { className: 'bursty' }));
    const settled = async () =>
      eventually(async () => {
        const all = await Promise.all(created.map((each) => store.get('Environment', each.metadata.id)));
        const decided = all.filter((each) => each && (each.status.runnerId || getCondition(each.status.conditions, 'Scheduled')));
        return decided.length === created.length ? (all as Environment[]) : undefined;
      }, 'every environment scheduled or refused');
    const all = await settled();
    const placed = all.filter((each) => each.status.runnerId);
    const waiting = all.filter((each) => !each.status.runnerId);
    expect(placed).toHaveLength(14);
    expect(waiting).toHaveLength(1);
    const condition = getCondition(waiting[0]!.status.conditions, 'Scheduled');
    expect(condition).toMatchObject({ status: 'False', reason: 'NoRunnerAvailable' });
    expect(condition?.message).toContain('cpuMillicores 7000+500>7000 (1750 allocatable × 4)');
  });

  it('reports an unknown class and schedules once the class exists', async () => {
    await createRunner(store, 'host');
    start();
    const environment = await createEnvironment(store, 'big', { className: 'huge' });
    const waiting = await environmentWhere(
      environment.metadata.id,
      (each) => getCondition(each.status.conditions, 'Scheduled')?.reason === 'ClassNotFound',
      'ClassNotFound',
    );
    expect(getCondition(waiting.status.conditions, 'Scheduled')?.message).toContain('"huge"');
    await createClass(store, 'huge', 8000, 2 ** 34);
    await environmentWhere(environment.metadata.id, (each) => each.status.runnerId !== undefined, 'scheduled after class creation');
  });

  it('spreads environments over the least loaded runners', async () => {
    const capacity = { cpuMillicores: 8000, memoryBytes: 2 ** 34, environments: 10 };
    const a = await createRunner(store, 'a', { capacity });
    const b = await createRunner(store, 'b', { capacity });
    start();
    const environments = await Promise.all(['e1', 'e2', 'e3', 'e4'].map((name) => createEnvironment(store, name)));
    const placed = await Promise.all(
      environments.map((each) => environmentWhere(each.metadata.id, (current) => current.status.runnerId !== undefined, 'scheduled')),
    );
    const counts = new Map<string, number>();
    for (const each of placed) counts.set(each.status.runnerId!, (counts.get(each.status.runnerId!) ?? 0) + 1);
    expect(counts.get(a.metadata.id)).toBe(2);
    expect(counts.get(b.metadata.id)).toBe(2);
  });

  it('marks a runner Inactive when its heartbeat is older than the timeout', async () => {
    const runner = await createRunner(store, 'quiet', { heartbeat: clock.now() });
    const fresh = await createRunner(store, 'chatty', { heartbeat: clock.now() });
    start();
    clock.advance(20);
    await store.update('Runner', fresh.metadata.id, (current) => ({
      ...current,
      status: { ...current.status, lastHeartbeatTime: clock.now().toISOString() },
    }));
    clock.advance(15); // quiet: 35 s without heartbeat; chatty: 15 s
    const inactive = await eventually(async () => {
      const current = await store.get('Runner', runner.metadata.id);
      return current?.status.phase === 'Inactive' ? current : undefined;
    }, 'runner Inactive');
    expect(getCondition(inactive.status.conditions, 'Ready')).toMatchObject({ status: 'False', reason: 'HeartbeatTimeout' });
    expect((await store.get('Runner', fresh.metadata.id))?.status.phase).toBe('Active');
  });

  it('stops environments after their inactivity timeout, and never those with timeout 0', async () => {
    const runner = await createRunner(store, 'host', { heartbeat: clock.now() });
    const running = { phase: 'Running' as const, runnerId: runner.metadata.id, lastActivityTime: clock.now().toISOString() };
    const idle = await createEnvironment(store, 'idle', { timeouts: { inactivitySeconds: 60 } }, running);
    const forever = await createEnvironment(store, 'forever', { timeouts: { inactivitySeconds: 0 } }, running);
    const busy = await createEnvironment(store, 'busy', { timeouts: { inactivitySeconds: 60 } }, running);
    start();
    clock.advance(45);
    await store.update('Environment', busy.metadata.id, (current) => ({
      ...current,
      status: { ...current.status, lastActivityTime: clock.now().toISOString() },
    }));
    clock.advance(30);
    await store.update('Runner', runner.metadata.id, (current) => ({
      ...current,
      status: { ...current.status, lastHeartbeatTime: clock.now().toISOString() },
    }));
    const stopped = await environmentWhere(idle.metadata.id, (each) => each.spec.desiredPhase === 'Stopped', 'idle stopped');
    expect(getCondition(stopped.status.conditions, 'StoppedForInactivity')).toMatchObject({ status: 'True', reason: 'InactivityTimeout' });
    expect(stopped.status.message).toContain('without activity');
    expect(stopped.metadata.generation).toBe(2);
    // The pass that stopped the idle one looked at the others with the same clock.
    await halt();
    expect((await store.get('Environment', forever.metadata.id))?.spec.desiredPhase).toBe('Running');
    expect((await store.get('Environment', busy.metadata.id))?.spec.desiredPhase).toBe('Running');
  });

  it('removes deleted environments once no runner holds them', async () => {
    const runner = await createRunner(store, 'host');
    const unscheduled = await createEnvironment(store, 'never-placed', { desiredPhase: 'Deleted' });
    const placed = await createEnvironment(store, 'placed', {}, { runnerId: runner.metadata.id, phase: 'Running' });
    start();
    await eventually(async () => ((await store.get('Environment', unscheduled.metadata.id)) ? undefined : true), 'unscheduled removed');
    await store.update('Environment', placed.metadata.id, (current) => ({
      ...current,
      spec: { ...current.spec, desiredPhase: 'Deleted' },
    }));
    // Still on the runner: the runner must remove it first.
    await store.update('Environment', placed.metadata.id, (current) => ({ ...current, status: { ...current.status, phase: 'Deleting' } }));
    expect(await store.get('Environment', placed.metadata.id)).toBeDefined();
    await store.update('Environment', placed.metadata.id, (current) => ({ ...current, status: { ...current.status, phase: 'Deleted' } }));
    await eventually(
      async () => ((await store.get('Environment', placed.metadata.id)) ? undefined : true),
      'placed removed after runner cleanup',
    );
  });

  it('converges after a restart on changes made while it was down', async () => {
    start();
    await halt();
    const runner = await createRunner(store, 'host');
    const environment = await createEnvironment(store, 'offline');
    const doomed = await createEnvironment(store, 'doomed', { desiredPhase: 'Deleted' });
    start();
    const placed = await environmentWhere(environment.metadata.id, (each) => each.status.runnerId !== undefined, 'scheduled after restart');
    expect(placed.status.runnerId).toBe(runner.metadata.id);
    await eventually(async () => ((await store.get('Environment', doomed.metadata.id)) ? undefined : true), 'doomed removed after restart');
  });
});

describe('chooseRunner', () => {
  const now = new Date().toISOString();
  const meta = (id: string, name: string) => ({ id, name, generation: 1, resourceVersion: '1', createdTime: now, labels: {}, ownerId: '' });
  const small = {
    kind: 'EnvironmentClass' as const,
    apiVersion: 'v1' as const,
    metadata: meta('cls-1', 'small'),
    spec: { cpuMillicores: 1000, memoryBytes: 1000, swapBytes: 0, pids: 100 },
    status: {},
  };
  const runner = (
    id: string,
    allocatable?: { cpuMillicores: number; memoryBytes: number; environments: number },
    capacity = { cpuMillicores: 100_000, memoryBytes: 100_000, environments: 100 },
  ) => ({
    kind: 'Runner' as const,
    apiVersion: 'v1' as const,
    metadata: meta(id, id),
    spec: { unschedulable: false },
    status: { phase: 'Active' as const, capacity, ...(allocatable ? { allocatable } : {}), endpoints: {}, conditions: [] },
  });
  const environment = (id: string, runnerId?: string, desiredPhase: 'Running' | 'Stopped' = 'Running'): Environment => ({
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: meta(id, id),
    spec: {
      desiredPhase,
      source: { git: { url: 'https://example.com/r.git' } },
      devcontainer: {},
      className: 'small',
      ports: [],
      timeouts: { inactivitySeconds: 0 },
    },
    status: { phase: 'Pending', observedGeneration: 0, conditions: [], ports: [], ...(runnerId ? { runnerId } : {}) },
  });

  it('uses allocatable over capacity and counts only environments that should run', () => {
    const tight = runner('run-tight', { cpuMillicores: 1500, memoryBytes: 100_000, environments: 10 });
    const placed = [environment('env-a', 'run-tight'), environment('env-b', 'run-tight', 'Stopped')];
    const refused = chooseRunner(environment('env-new'), [tight], placed, [small]);
    expect(refused.runner).toBeUndefined();
    if (!refused.runner) {
      expect(refused.reason).toBe('NoRunnerAvailable');
      expect(refused.message).toContain('cpuMillicores 1000+1000>1500');
    }
    expect(chooseRunner(environment('env-new'), [tight], [placed[1]!], [small]).runner?.metadata.id).toBe('run-tight');
  });

  it('counts requests (defaulting to limits) and multiplies allocatable by the overbooking ratios', () => {
    const bursty = {
      ...small,
      metadata: meta('cls-2', 'bursty'),
      spec: { ...small.spec, requests: { cpuMillicores: 250, memoryBytes: 400 } },
    };
    const host = {
      ...runner('run-host', { cpuMillicores: 1000, memoryBytes: 1000, environments: 10 }),
    };
    const overbooked = { ...host, status: { ...host.status, overbooking: { cpu: 2, memory: 1.5 } } };
    const withClass = (id: string, className: string, runnerId?: string) => {
      const each = environment(id, runnerId);
      return { ...each, spec: { ...each.spec, className } };
    };
    // Without overbooking, 1000m holds four 250m requests; two 400-byte requests fill memory before that.
    const two = [withClass('env-1', 'bursty', 'run-host'), withClass('env-2', 'bursty', 'run-host')];
    const refused = chooseRunner(withClass('env-new', 'bursty'), [host], two, [small, bursty]);
    expect(refused.runner).toBeUndefined();
    if (!refused.runner) expect(refused.message).toContain('memoryBytes 800+400>1000');
    // A class without requests takes its limits (1000m): nothing else fits beside it, with ratio 1.
    const full = chooseRunner(withClass('env-new', 'bursty'), [host], [withClass('env-1', 'small', 'run-host')], [small, bursty]);
    expect(full.runner).toBeUndefined();
    if (!full.runner) expect(full.message).toContain('cpuMillicores 1000+250>1000');
    // Overbooked (CPU × 2, memory × 1.5): 1250m and 1400 bytes of requests fit on 1000m and 1000 bytes.
    const placed = chooseRunner(withClass('env-new', 'bursty'), [overbooked], [withClass('env-1', 'small', 'run-host')], [small, bursty]);
    expect(placed.runner?.metadata.id).toBe('run-host');
  });

  it('prefers the runner with the lowest utilisation', () => {
    const busy = runner('run-busy');
    const idle = runner('run-idle');
    const placed = [environment('env-a', 'run-busy')];
    expect(chooseRunner(environment('env-new'), [busy, idle], placed, [small]).runner?.metadata.id).toBe('run-idle');
  });
});
