// The runner's controller: registers with the server, heartbeats, and reconciles the environments scheduled to
// this runner (issue 2 §6 runner protocol). An informer of the controller kit (list + watch over the API, a
// cache, periodic resync) feeds a work queue of environment ids whose workers run the EnvironmentReconciler;
// see docs/design/0009-controller-kit.md.
import { cpus, totalmem } from 'node:os';
import {
  ApiError,
  type Condition,
  Informer,
  WorkQueue,
  defaultControllerRateLimiter,
  type Environment,
  type EnvironmentStatus,
  type Runner,
  type RunnerStatus,
  type WarrenClient,
} from '@warren/api';
import { type Logger, backoffMs, errorMessage, isRetryable, silentLogger, sleep } from '@warren/base';
import type { RunnerConfig } from '../config.js';
import { type EnvironmentBackend, EnvironmentReconciler } from '../environment/index.js';
import { environmentListerWatcher } from './environment-lister-watcher.js';
import { runnerMustAct } from './environment-predicates.js';
import { watchOomKills } from './oom-watch.js';
import { runnerResources } from './runner-resources.js';

/** Version reported in the runner's status. */
export const RUNNER_VERSION = '0.1.0';

/** Options of {@link RunnerController}. */
export interface RunnerControllerOptions {
  client: WarrenClient;
  /** Runner name (DNS label), unique per server. */
  name: string;
  config: RunnerConfig;
  backend: EnvironmentBackend;
  /** Base URL of this runner's access API, published as `status.endpoints.access`. */
  accessUrl: string;
  /**
   * More endpoints and facts to publish with every heartbeat (SSH gateway address, port proxy URL, SSH host
   * key ...): read at each heartbeat so services started later appear on the next one.
   */
  publish?: () => { endpoints?: { ssh?: string; proxy?: string }; info?: Record<string, string>; conditions?: Condition[] };
  logger?: Logger;
  /** Called after each reconcile with its duration in ms and outcome (the runner's metrics). */
  onReconcile?: (durationMs: number, outcome: 'success' | 'error') => void;
  /** Milliseconds between two looks at running environments' OOM-kill counters (default 5000; controller/oom-watch.ts). */
  oomWatchIntervalMs?: number;
}

/**
 * Runs the runner protocol. `start()` registers (retrying until the server answers) and starts the heartbeat,
 * the informer (list + watch of the environments scheduled to this runner, resumed from the last seen
 * resourceVersion after any error, server restarts included, and listed again after 410 Gone; every cached
 * environment queued again each `resyncSeconds`; host state of environments not listed removed after the
 * first list) and `concurrentReconciles` workers; `close()` stops them
 * and waits for in-flight reconciles to abort. An environment is reconciled when it appears, disappears, or
 * changes in a way that can alter what the runner must do ({@link runnerMustAct}); a failed reconcile is
 * retried with backoff (500 ms doubling to 60 s per environment).
 */
export class RunnerController {
  private readonly client: WarrenClient;
  private readonly config: RunnerConfig;
  private readonly backend: EnvironmentBackend;
  private readonly logger: Logger;
  private readonly informer: Informer<Environment>;
  private readonly queue: WorkQueue;
  private readonly reconciler: EnvironmentReconciler;
  private readonly controller = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private runner: Runner | undefined;
  private orphansCleaned = false;
  /** Resolves once the first list of environments has been queued and orphans cleaned (for tests and start-up ordering). */
  readonly synced: Promise<void>;

  constructor(private readonly options: RunnerControllerOptions) {
    this.client = options.client;
    this.config = options.config;
    this.backend = options.backend;
    this.logger = (options.logger ?? silentLogger).child({ component: 'runner-controller' });
    this.reconciler = new EnvironmentReconciler({
      backend: this.backend,
      stopGraceSeconds: this.config.stopGraceSeconds,
      logger: options.logger ?? silentLogger,
      writeStatus: (environment, status) => this.writeStatus(environment, status),
    });
    this.queue = new WorkQueue({ rateLimiter: defaultControllerRateLimiter({ baseDelayMs: 500, maxDelayMs: 60_000 }) });
    this.informer = new Informer<Environment>({
      listerWatcher: environmentListerWatcher(this.client, () => this.runnerId),
      name: 'Environment',
      logger: this.logger,
      resyncIntervalMs: this.config.resyncSeconds * 1000,
      onListed: (listed) => this.removeOrphans(listed),
    });
    this.synced = this.informer.whenSynced();
    this.informer.subscribe((event) => this.queue.add(event.object.metadata.id), runnerMustAct);
  }

  /** The registered runner's id. @throws {Error} before {@link start} resolved. */
  get runnerId(): string {
    if (!this.runner) throw new Error('the runner is not registered yet');
    return this.runner.metadata.id;
  }

  /**
   * Registers (retrying with backoff while the server is unreachable), sends the first heartbeat and
   * starts the loops.
   * @throws {ApiError} when the server rejects registration for a reason a retry cannot fix (401, 403, 422).
   */
  async start(): Promise<void> {
    this.runner = await this.retrying('register', () => this.register());
    this.logger.info({ runnerId: this.runner.metadata.id, name: this.options.name }, 'runner registered');
    await this.heartbeat().catch((error: unknown) => this.logger.warn({ error: errorMessage(error) }, 'heartbeat failed'));
    this.loops.push(
      this.heartbeatLoop(),
      this.informer.run(this.signal),
      this.queue.run((key, signal) => this.process(key, signal), {
        signal: this.signal,
        concurrency: this.config.concurrentReconciles,
        logger: this.options.logger ?? silentLogger,
        onProcessed: (_key, durationMs, outcome) => this.options.onReconcile?.(durationMs, outcome),
      }),
    );
    // An OOM kill reaches status within seconds, not at the next resync (backends without stats have no counter).
    const stats = this.backend.stats?.bind(this.backend);
    if (stats) {
      this.loops.push(
        watchOomKills({
          stats,
          environments: () => this.informer.list(),
          enqueue: (id) => this.queue.add(id),
          signal: this.signal,
          ...(this.options.oomWatchIntervalMs === undefined ? {} : { intervalMs: this.options.oomWatchIntervalMs }),
          logger: this.options.logger ?? silentLogger,
        }),
      );
    }
  }

  /** Stops every loop and aborts in-flight reconciles (the host state stays; a restart adopts it). */
  async close(): Promise<void> {
    this.controller.abort(new DOMException('runner closing', 'AbortError'));
    await Promise.allSettled(this.loops);
  }

  /** Resolves when no reconcile is queued or running. For tests. */
  idle(): Promise<void> {
    return this.queue.whenIdle();
  }

  /** Environments waiting in the reconcile queue (not counting those being reconciled or delayed for a retry). */
  queueDepth(): number {
    return this.queue.length;
  }

  /** The freshest known object of each environment this runner reconciles (watch events or our own writes). */
  environments(): Environment[] {
    return this.informer.list();
  }

  /**
   * Changes part of an environment's status without clobbering concurrent writers: `change` gets the freshest
   * known status and returns the new one (or undefined for "nothing to do"); the write is a PUT guarded by
   * `resourceVersion`, and on 409 the object is read again and `change` re-applied (up to 5 times).
   * @returns the stored object, or undefined when `change` found nothing to do or the environment is unknown.
   * @throws {ApiError} other API failures, or 409 after the last attempt.
   */
  async patchStatus(
    environmentId: string,
    change: (status: EnvironmentStatus) => EnvironmentStatus | undefined,
  ): Promise<Environment | undefined> {
    let current = this.informer.get(environmentId);
    for (let attempt = 0; current; attempt++) {
      const next = change(current.status);
      if (!next) return undefined;
      try {
        const stored = await this.client.updateEnvironmentStatus(environmentId, next, current.metadata.resourceVersion);
        this.informer.apply(stored);
        return stored;
      } catch (error) {
        if (!(error instanceof ApiError) || error.code !== 409 || attempt >= 4) throw error;
        current = await this.client.get('Environment', environmentId);
      }
    }
    return undefined;
  }

  private get signal(): AbortSignal {
    return this.controller.signal;
  }

  private async register(): Promise<Runner> {
    try {
      return await this.client.createRunner({ metadata: { name: this.options.name } });
    } catch (error) {
      if (error instanceof ApiError && (error.reason === 'AlreadyExists' || error.code === 409)) {
        return this.client.get('Runner', this.options.name);
      }
      throw error;
    }
  }

  /** Retries `work` with backoff while it fails with a transient error (unreachable server, 5xx, 429). */
  private async retrying<T>(what: string, work: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await work();
      } catch (error) {
        // A TypeError is a bug in the request, not a transient failure: not retried (as before the one classifier).
        if (!isRetryable(error) || error instanceof TypeError || this.signal.aborted) throw error;
        const delay = backoffMs(attempt, 200, 5_000);
        this.logger.warn({ error: errorMessage(error), retryInMs: delay }, `${what} failed, retrying`);
        await sleep(delay, this.signal);
      }
    }
  }

  private runnerStatus(): RunnerStatus {
    const { capacity, allocatable } = runnerResources(cpus().length, totalmem(), this.config);
    const published = this.options.publish?.() ?? {};
    return {
      phase: 'Active',
      lastHeartbeatTime: new Date().toISOString(),
      capacity,
      allocatable,
      overbooking: { ...this.config.overbooking },
      version: RUNNER_VERSION,
      endpoints: { ...published.endpoints, access: this.options.accessUrl },
      conditions: published.conditions ?? [],
      ...(published.info ? { info: published.info } : {}),
    };
  }

  private async heartbeat(): Promise<void> {
    try {
      await this.client.updateRunnerStatus(this.runnerId, this.runnerStatus());
    } catch (error) {
      // The runner object was removed (e.g. by an admin): register again under the same name.
      if (error instanceof ApiError && error.code === 404) {
        this.runner = await this.register();
        await this.client.updateRunnerStatus(this.runnerId, this.runnerStatus());
        return;
      }
      throw error;
    }
  }

  private async heartbeatLoop(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        await sleep(this.config.heartbeatSeconds * 1000, this.signal);
        await this.heartbeat();
      } catch (error) {
        if (this.signal.aborted) return;
        this.logger.warn({ error: errorMessage(error) }, 'heartbeat failed');
      }
    }
  }

  /**
   * Runs after each list of the informer, before its watch starts (so no environment newer than the list is
   * reconciled meanwhile), until it succeeds once: queues the host state of environments the server no longer
   * assigns to this runner (deleted while it was down) for removal, and removes orphaned host objects.
   */
  private async removeOrphans(listed: readonly Environment[]): Promise<void> {
    if (this.orphansCleaned) return;
    this.orphansCleaned = true;
    const known = new Set(listed.map((environment) => environment.metadata.id));
    try {
      for (const id of await this.backend.listEnvironments()) {
        if (!known.has(id)) this.queue.add(id);
      }
      const removed = await this.backend.cleanupOrphans(known, this.stepContext());
      if (removed.length > 0) this.logger.info({ removed }, 'orphaned host objects removed');
    } catch (error) {
      this.orphansCleaned = false;
      this.logger.warn({ error: errorMessage(error) }, 'orphan cleanup failed');
    }
  }

  private stepContext() {
    return { signal: this.signal, logger: this.logger, onProgress: () => {} };
  }

  /**
   * Reconciles the environment `key` as the cache has it. One the server no longer has (not in the cache)
   * only has its host state removed.
   */
  private async process(key: string, signal: AbortSignal): Promise<void> {
    const environment = this.informer.get(key);
    if (!environment) {
      const observed = await this.backend.observe(key);
      if (observed.exists) {
        await this.backend.remove(key, { signal, logger: this.logger.child({ environmentId: key }), onProgress: () => {} });
        this.logger.info({ environmentId: key }, 'host state of a removed environment deleted');
      }
      return;
    }
    try {
      await this.reconciler.reconcile(environment, signal);
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) {
        // The server no longer has it (deleted and collected): drop it from the cache, which queues it again
        // to remove what is left on the host.
        const current = this.informer.get(key);
        if (current) this.informer.applyDeleted(current);
        return;
      }
      throw error;
    }
  }

  /**
   * Writes an environment's status. The runner owns the status, except `lastActivityTime` (written by
   * keepalives on the server), which is carried over from the freshest object we know. The stored object
   * goes into the cache at once (its watch event is then ignored as not newer).
   */
  private async writeStatus(environment: Environment, status: EnvironmentStatus): Promise<Environment> {
    const latest = this.informer.get(environment.metadata.id);
    const activity = [status.lastActivityTime, latest?.status.lastActivityTime]
      .filter((value): value is string => !!value)
      .sort()
      .pop();
    const body: EnvironmentStatus = {
      ...status,
      runnerId: status.runnerId ?? this.runnerId,
      ...(activity ? { lastActivityTime: activity } : {}),
    };
    const stored = await this.client.updateEnvironmentStatus(environment.metadata.id, body);
    this.informer.apply(stored);
    return stored;
  }
}
