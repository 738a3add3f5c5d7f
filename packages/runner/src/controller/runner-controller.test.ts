// RunnerController against an in-memory API (list, filtered watch, status writes) and the FakeBackend: which
// changes wake a reconcile pass (counted by the backend's `observe` calls), and removal of host state the
// server no longer has.
/* eslint-disable @typescript-eslint/require-await -- an in-memory fake of the async client */
import {
  ApiError,
  EnvironmentSpecSchema,
  EnvironmentStatusSchema,
  makeStatus,
  setCondition,
  type Environment,
  type EnvironmentStatus,
  type Runner,
  type RunnerStatus,
  type WarrenClient,
  type WatchEvent,
} from '@warren/api';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveRunnerConfig } from '../config.js';
import { FakeBackend } from '../environment/index.js';
import { RunnerController } from './runner-controller.js';

/**
 * The part of the server the runner talks to, in memory: one runner, environments with a global
 * resourceVersion, a watch filtered by runnerId that replays history, status writes merged as the server
 * merges them (runnerId kept, lastActivityTime never going back).
 */
class FakeApi {
  private version = 0;
  private readonly environments = new Map<string, Environment>();
  private readonly history: WatchEvent<Environment>[] = [];
  private readonly wakers = new Set<() => void>();
  runner: Runner | undefined;

  async createRunner(body: { metadata: { name: string } }): Promise<Runner> {
    this.runner = {
      kind: 'Runner',
      apiVersion: 'v1',
      metadata: {
        id: 'run-1',
        name: body.metadata.name,
        generation: 1,
        resourceVersion: String(++this.version),
        createdTime: new Date().toISOString(),
        labels: {},
        ownerId: '',
      },
      spec: { unschedulable: false },
      status: { phase: 'Inactive', endpoints: {}, conditions: [] },
    };
    return this.runner;
  }

  async updateRunnerStatus(_id: string, status: RunnerStatus): Promise<Runner> {
    this.runner = { ...this.runner!, status };
    return this.runner;
  }

  async get(kind: 'Environment' | 'Runner', id: string): Promise<Environment | Runner> {
    const found = kind === 'Runner' ? this.runner : this.environments.get(id);
    if (!found) throw new ApiError(makeStatus('NotFound', `${kind} "${id}" not found`));
    return found;
  }

  async list(_kind: 'Environment', options: { runnerId?: string }) {
    const items = [...this.environments.values()].filter((each) => each.status.runnerId === options.runnerId);
    return { kind: 'EnvironmentList', apiVersion: 'v1', metadata: { resourceVersion: String(this.version) }, items };
  }

  async *watch(
    _kind: 'Environment',
    options: { runnerId?: string; resourceVersion?: string; signal?: AbortSignal },
  ): AsyncGenerator<WatchEvent<Environment>> {
    let after = Number(options.resourceVersion ?? this.version);
    for (;;) {
      if (options.signal?.aborted) throw new DOMException('aborted', 'AbortError');
      const next = this.history.find((event) => Number(event.object.metadata.resourceVersion) > after);
      if (next) {
        after = Number(next.object.metadata.resourceVersion);
        if (next.object.status.runnerId === options.runnerId) yield next;
        continue;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.wakers.delete(wake);
          resolve();
        };
        this.wakers.add(wake);
        options.signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  async updateEnvironmentStatus(id: string, status: EnvironmentStatus, resourceVersion?: string): Promise<Environment> {
    const current = this.environments.get(id);
    if (!current) throw new ApiError(makeStatus('NotFound', `environment "${id}" not found`));
    if (resourceVersion !== undefined && resourceVersion !== current.metadata.resourceVersion)
      throw new ApiError(makeStatus('Conflict', 'stale'));
    const previous = current.status.lastActivityTime;
    const lastActivityTime = [previous, status.lastActivityTime]
      .filter((value): value is string => !!value)
      .sort()
      .pop();
    return this.write(id, (each) => ({
      ...each,
      status: { ...status, runnerId: current.status.runnerId, ...(lastActivityTime ? { lastActivityTime } : {}) },
    }));
  }

  // ---- what other components of the server do

  /** Creates an environment already scheduled to the runner (as the scheduler leaves it). */
  create(name: string): Environment {
    const id = `env-${name}`;
    const environment: Environment = {
      kind: 'Environment',
      apiVersion: 'v1',
      metadata: { id, name, generation: 1, resourceVersion: '0', createdTime: new Date().toISOString(), labels: {}, ownerId: 'usr-1' },
      spec: EnvironmentSpecSchema.parse({ source: { git: { url: 'https://example.test/repo.git' } } }),
      status: EnvironmentStatusSchema.parse({ phase: 'Pending', runnerId: this.runner!.metadata.id }),
    };
    return this.store(environment, 'ADDED');
  }

  /** A write by anyone: the generation goes up when the spec changed. */
  write(id: string, change: (environment: Environment) => Environment): Environment {
    const current = this.environments.get(id)!;
    const next = change(structuredClone(current));
    const generation =
      JSON.stringify(next.spec) === JSON.stringify(current.spec) ? current.metadata.generation : current.metadata.generation + 1;
    return this.store({ ...next, metadata: { ...next.metadata, generation } }, 'MODIFIED');
  }

  /** Removes an environment (the garbage collector's delete). */
  remove(id: string): void {
    const current = this.environments.get(id)!;
    this.environments.delete(id);
    this.record({ type: 'DELETED', object: { ...current, metadata: { ...current.metadata, resourceVersion: String(++this.version) } } });
  }

  private store(environment: Environment, type: 'ADDED' | 'MODIFIED'): Environment {
    const stored = { ...environment, metadata: { ...environment.metadata, resourceVersion: String(++this.version) } };
    this.environments.set(stored.metadata.id, stored);
    this.record({ type, object: stored });
    return stored;
  }

  private record(event: WatchEvent<Environment>): void {
    this.history.push(event);
    for (const wake of [...this.wakers]) wake();
  }
}

/** Polls `check` on the event loop until it holds. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 5_000; round++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`never true: ${what}`);
}

describe('RunnerController', () => {
  let controller: RunnerController | undefined;
  afterEach(async () => {
    await controller?.close();
    controller = undefined;
  });

  async function start(backend: FakeBackend) {
    const api = new FakeApi();
    controller = new RunnerController({
      client: api as unknown as WarrenClient,
      name: 'host',
      // No resync and no heartbeat during a test: every pass is caused by an event.
      config: resolveRunnerConfig({ resyncSeconds: 86_400, heartbeatSeconds: 300 }),
      backend,
      accessUrl: 'http://127.0.0.1:1',
    });
    await controller.start();
    await controller.synced;
    return { api, controller };
  }

  it('reconciles on spec changes, but not on keepalives, server conditions or its own status writes', async () => {
    const backend = new FakeBackend();
    const { api, controller } = await start(backend);
    // Every pass starts by observing the host (a start observes once more; a stop does not).
    const observed: string[] = [];
    const observe = backend.observe.bind(backend);
    backend.observe = (environmentId) => {
      observed.push(environmentId);
      return observe(environmentId);
    };
    const passes = (id: string) => observed.filter((each) => each === id).length;
    const cached = (id: string) => controller.environments().find((each) => each.metadata.id === id);

    const { metadata } = api.create('one');
    const id = metadata.id;
    await until(() => cached(id)?.status.phase === 'Running', 'Running');
    await controller.idle();
    const before = passes(id);

    api.write(id, (each) => ({ ...each, status: { ...each.status, lastActivityTime: new Date(Date.now() + 60_000).toISOString() } }));
    api.write(id, (each) => ({
      ...each,
      status: { ...each.status, conditions: setCondition(each.status.conditions, 'Scheduled', 'True', 'RunnerAssigned', 'again') },
    }));
    await controller.patchStatus(id, (status) => ({ ...status, ports: [{ port: 8080, visibility: 'Owner', source: 'Detected' }] }));
    await until(
      () => cached(id)?.status.conditions.some((each) => each.message === 'again') === true && cached(id)?.status.ports.length === 1,
      'cache updated',
    );
    await controller.idle();
    expect(passes(id)).toBe(before);

    api.write(id, (each) => ({ ...each, spec: { ...each.spec, desiredPhase: 'Stopped' } }));
    await until(() => cached(id)?.status.phase === 'Stopped', 'Stopped');
    await controller.idle();
    expect(backend.host.get(id)?.container).toBe('absent');
    expect(passes(id)).toBe(before + 1); // its own Stopped write did not wake another pass
    expect(cached(id)?.status.lastActivityTime).toBeDefined(); // the keepalive survived the runner's whole-status writes
  });

  it('removes the host state of environments the server no longer has: deleted while running, and left from before a restart', async () => {
    const backend = new FakeBackend();
    backend.host.set('env-left-over', {
      contentReady: true,
      container: 'running',
      starts: 1,
      createDone: true,
      createRuns: 1,
      postStartRuns: 1,
    });
    const { api, controller } = await start(backend);
    await until(() => !backend.host.has('env-left-over'), 'left-over host state removed');

    const { metadata } = api.create('doomed');
    await until(() => backend.host.get(metadata.id)?.container === 'running', 'running on the host');
    api.remove(metadata.id);
    await until(() => !backend.host.has(metadata.id), 'host state removed');
    await controller.idle();
    expect(controller.environments()).toEqual([]);
  });
});
