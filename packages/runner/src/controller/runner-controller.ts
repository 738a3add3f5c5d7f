// The runner agent: registers with the server, heartbeats, watches the environments scheduled to this
// runner and feeds them to the EnvironmentReconciler through a work queue (issue 2 §6 runner protocol).
import { cpus, totalmem } from 'node:os';
import { ApiError, type Environment, type EnvironmentStatus, type Runner, type RunnerStatus, type WarrenClient } from '@warren/api';
import { type Logger, backoffMs, errorMessage, isAbortError, silentLogger, sleep } from '@warren/base';
import type { RunnerConfig } from '../config.js';
import type { EnvironmentBackend } from '../environment/backend.js';
import { EnvironmentReconciler } from '../environment/reconciler.js';
import { WorkQueue } from './work-queue.js';

/** Version reported in the runner's status. */
export const RUNNER_VERSION = '0.1.0';

/** Options of {@link RunnerAgent}. */
export interface RunnerAgentOptions {
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
  publish?: () => { endpoints?: { ssh?: string; proxy?: string }; info?: Record<string, string> };
  logger?: Logger;
}

/** A queued item: the latest known object, or `gone` when the server no longer has it. */
interface QueueItem {
  environment: Environment;
  gone: boolean;
}

/**
 * Runs the runner protocol. `start()` registers (retrying until the server answers) and starts the
 * heartbeat, watch and resync loops; `close()` stops them and waits for in-flight reconciles to abort.
 * The watch resumes from the last seen resourceVersion after any error (server restarts included),
 * relisting when the server answers 410 Gone.
 */
export class RunnerAgent {
  private readonly client: WarrenClient;
  private readonly config: RunnerConfig;
  private readonly backend: EnvironmentBackend;
  private readonly logger: Logger;
  private readonly queue: WorkQueue<QueueItem>;
  private readonly reconciler: EnvironmentReconciler;
  private readonly controller = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private runner: Runner | undefined;
  /** The object returned by our last status write per environment (fresher than the watch until its event arrives). */
  private readonly written = new Map<string, Environment>();
  private orphansCleaned = false;
  /** Resolves once the first list of environments has been queued (for tests and start-up ordering). */
  readonly synced: Promise<void>;
  private markSynced!: () => void;

  constructor(private readonly options: RunnerAgentOptions) {
    this.client = options.client;
    this.config = options.config;
    this.backend = options.backend;
    this.logger = (options.logger ?? silentLogger).child({ component: 'agent' });
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
    this.reconciler = new EnvironmentReconciler({
      backend: this.backend,
      stopGraceSeconds: this.config.stopGraceSeconds,
      logger: options.logger ?? silentLogger,
      writeStatus: (environment, status) => this.writeStatus(environment, status),
    });
    this.queue = new WorkQueue<QueueItem>({
      concurrency: this.config.concurrentReconciles,
      logger: options.logger ?? silentLogger,
      process: (key, item, signal) => this.process(key, item, signal),
    });
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
    this.loops.push(this.heartbeatLoop(), this.watchLoop(), this.resyncLoop());
  }

  /** Stops every loop and aborts in-flight reconciles (the host state stays; a restart adopts it). */
  async close(): Promise<void> {
    this.controller.abort(new DOMException('runner closing', 'AbortError'));
    await this.queue.close();
    await Promise.allSettled(this.loops);
  }

  /** Resolves when no reconcile is queued or running. For tests. */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** The freshest known object of each environment this runner reconciles (watch events or our own writes). */
  environments(): Environment[] {
    const result: Environment[] = [];
    for (const key of this.queue.keys()) {
      const item = this.queue.latest(key);
      if (!item || item.gone) continue;
      const written = this.written.get(key);
      result.push(written && Number(written.metadata.resourceVersion) > Number(item.environment.metadata.resourceVersion) ? written : item.environment);
    }
    return result;
  }

  /**
   * Changes part of an environment's status without clobbering concurrent writers: `change` gets the freshest
   * known status and returns the new one (or undefined for "nothing to do"); the write is a PUT guarded by
   * `resourceVersion`, and on 409 the object is read again and `change` re-applied (up to 5 times).
   * @returns the stored object, or undefined when `change` found nothing to do or the environment is unknown.
   * @throws {ApiError} other API failures, or 409 after the last attempt.
   */
  async patchStatus(environmentId: string, change: (status: EnvironmentStatus) => EnvironmentStatus | undefined): Promise<Environment | undefined> {
    let current = this.environments().find((environment) => environment.metadata.id === environmentId);
    for (let attempt = 0; current; attempt++) {
      const next = change(current.status);
      if (!next) return undefined;
      try {
        const stored = await this.client.updateEnvironmentStatus(environmentId, next, current.metadata.resourceVersion);
        this.written.set(environmentId, stored);
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
        if (!isTransient(error) || this.signal.aborted) throw error;
        const delay = backoffMs(attempt, 200, 5_000);
        this.logger.warn({ error: errorMessage(error), retryInMs: delay }, `${what} failed, retrying`);
        await sleep(delay, this.signal);
      }
    }
  }

  private runnerStatus(): RunnerStatus {
    const capacity = {
      cpuMillicores: cpus().length * 1000,
      memoryBytes: totalmem(),
      environments: this.config.maxEnvironments,
    };
    const published = this.options.publish?.() ?? {};
    return {
      phase: 'Active',
      lastHeartbeatTime: new Date().toISOString(),
      capacity,
      allocatable: capacity,
      version: RUNNER_VERSION,
      endpoints: { ...published.endpoints, access: this.options.accessUrl },
      conditions: [],
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

  private async resyncLoop(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        await sleep(this.config.resyncSeconds * 1000, this.signal);
      } catch {
        return;
      }
      for (const key of this.queue.keys()) {
        const item = this.queue.latest(key);
        if (item) this.queue.add(key, item);
      }
    }
  }

  /** List, then watch from the list's resourceVersion; on error resume from the last seen version. */
  private async watchLoop(): Promise<void> {
    let resourceVersion: string | undefined;
    let attempt = 0;
    while (!this.signal.aborted) {
      try {
        if (resourceVersion === undefined) resourceVersion = await this.relist();
        for await (const event of this.client.watch('Environment', { runnerId: this.runnerId, resourceVersion, signal: this.signal })) {
          attempt = 0;
          resourceVersion = event.object.metadata.resourceVersion;
          if (event.type === 'BOOKMARK') continue;
          const environment = event.object;
          if (environment.status.runnerId !== undefined && environment.status.runnerId !== this.runnerId) continue;
          // The echo of our own status write changes nothing the reconcile that wrote it does not already know
          // (it runs on, has finished, or will be retried): keep the object, skip a reconcile pass.
          const own = this.written.get(environment.metadata.id);
          if (event.type === 'MODIFIED' && own?.metadata.resourceVersion === environment.metadata.resourceVersion) {
            this.queue.update(environment.metadata.id, { environment, gone: false });
            continue;
          }
          this.queue.add(environment.metadata.id, { environment, gone: event.type === 'DELETED' });
        }
        // The server ended the stream (e.g. shutting down): reconnect after a short pause.
        await sleep(backoffMs(attempt++, 100, 2_000), this.signal);
      } catch (error) {
        if (this.signal.aborted || isAbortError(error)) return;
        if (error instanceof ApiError && error.code === 410) {
          this.logger.info({ resourceVersion }, 'watch history expired, relisting');
          resourceVersion = undefined;
          continue;
        }
        const delay = backoffMs(attempt++, 200, 5_000);
        this.logger.warn({ error: errorMessage(error), retryInMs: delay }, 'watch failed, reconnecting');
        await sleep(delay, this.signal).catch(() => {});
      }
    }
  }

  /** Lists this runner's environments, queues each, removes orphans once; @returns the list's resourceVersion. */
  private async relist(): Promise<string> {
    const list = await this.client.list('Environment', { runnerId: this.runnerId, signal: this.signal });
    const listed = new Set<string>();
    for (const environment of list.items) {
      if (environment.status.runnerId !== undefined && environment.status.runnerId !== this.runnerId) continue;
      listed.add(environment.metadata.id);
      this.queue.add(environment.metadata.id, { environment, gone: false });
    }
    // Environments we reconciled that vanished from the server while the watch was down.
    for (const key of this.queue.keys()) {
      const item = this.queue.latest(key);
      if (item && !listed.has(key) && !item.gone) this.queue.add(key, { ...item, gone: true });
    }
    if (!this.orphansCleaned) {
      this.orphansCleaned = true;
      // Host state of environments the server no longer assigns to us (deleted while we were down).
      for (const id of await this.backend.listEnvironments()) {
        if (!listed.has(id) && !this.queue.latest(id)) this.queue.add(id, { environment: placeholder(id), gone: true });
      }
      try {
        const removed = await this.backend.cleanupOrphans(listed, this.stepContext());
        if (removed.length > 0) this.logger.info({ removed }, 'orphaned host objects removed');
      } catch (error) {
        this.orphansCleaned = false;
        this.logger.warn({ error: errorMessage(error) }, 'orphan cleanup failed');
      }
    }
    this.markSynced();
    return list.metadata.resourceVersion;
  }

  private stepContext() {
    return { signal: this.signal, logger: this.logger, onProgress: () => {} };
  }

  private async process(key: string, item: QueueItem, signal: AbortSignal): Promise<void> {
    if (item.gone) {
      const observed = await this.backend.observe(key);
      if (observed.exists) {
        await this.backend.remove(key, { signal, logger: this.logger.child({ environmentId: key }), onProgress: () => {} });
        this.logger.info({ environmentId: key }, 'host state of a removed environment deleted');
      }
      this.queue.forget(key);
      this.written.delete(key);
      return;
    }
    // Our own last write may not have come back through the watch yet: use whichever object is newer.
    const written = this.written.get(key);
    const environment =
      written && Number(written.metadata.resourceVersion) > Number(item.environment.metadata.resourceVersion) ? written : item.environment;
    try {
      await this.reconciler.reconcile(environment, signal);
    } catch (error) {
      if (error instanceof ApiError && error.code === 404) {
        // The server no longer has it (deleted and collected): remove what is left on the host.
        this.queue.add(key, { environment: item.environment, gone: true });
        return;
      }
      throw error;
    }
  }

  /**
   * Writes an environment's status. The runner owns the status, except `lastActivityTime` (written by
   * keepalives on the server), which is carried over from the freshest object we know.
   */
  private async writeStatus(environment: Environment, status: EnvironmentStatus): Promise<Environment> {
    const latest = this.queue.latest(environment.metadata.id)?.environment;
    const activity = [status.lastActivityTime, latest?.status.lastActivityTime].filter((value): value is string => !!value).sort().pop();
    const body: EnvironmentStatus = { ...status, runnerId: status.runnerId ?? this.runnerId, ...(activity ? { lastActivityTime: activity } : {}) };
    const stored = await this.client.updateEnvironmentStatus(environment.metadata.id, body);
    this.written.set(environment.metadata.id, stored);
    return stored;
  }
}

function isTransient(error: unknown): boolean {
  if (!(error instanceof ApiError)) return !(error instanceof TypeError);
  return error.code >= 500 || error.code === 429 || error.reason === 'ServiceUnavailable' || error.reason === 'Timeout';
}

/** A stand-in object for host state whose environment the server does not know (only the id is used). */
function placeholder(id: string): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name: id, generation: 0, resourceVersion: '0', createdTime: new Date(0).toISOString(), labels: {}, ownerId: '' },
    spec: {
      desiredPhase: 'Deleted',
      source: { git: { url: 'unknown' } },
      devcontainer: {},
      className: 'default',
      ports: [],
      timeouts: { inactivitySeconds: 0 },
    },
    status: { phase: 'Deleting', observedGeneration: 0, conditions: [], ports: [] },
  };
}
