// EnvironmentReconciler: compares an Environment's spec with what exists on the host and takes the next
// step, writing status after each one (DESIGN.md "Control flow" 3; controller-runtime's Reconcile).
import { type Condition, type Environment, type EnvironmentPhase, type EnvironmentStatus, type Progress, setCondition } from '@warren/api';
import { type Logger, errorMessage, isAbortError, silentLogger } from '@warren/base';
import {
  type EnvironmentBackend,
  type ObservedEnvironment,
  type ResolvedEnvironment,
  type StepContext,
  TerminalEnvironmentError,
} from './backend.js';
import { oomCondition } from './oom-condition.js';

/** Writes `status` for `environment` and returns the object as stored (PUT .../{id}/status). */
export type StatusWriter = (environment: Environment, status: EnvironmentStatus) => Promise<Environment>;

/** Options of {@link EnvironmentReconciler}. */
export interface EnvironmentReconcilerOptions {
  backend: EnvironmentBackend;
  writeStatus: StatusWriter;
  /** Seconds between SIGTERM and SIGKILL on stop. */
  stopGraceSeconds: number;
  logger?: Logger;
  /** Minimum milliseconds between two progress-only status writes (default 500). */
  progressIntervalMs?: number;
  /**
   * How long the announcement of a step (phase Creating/Starting/Stopping with its progress) waits before it
   * is written, in milliseconds (default 500). Steps that finish sooner are never announced: their result goes
   * out with the next write, so a fast start writes status once. 0 writes every announcement at once.
   */
  announceDelayMs?: number;
}

/** Condition types the reconciler maintains. */
export const ConditionTypes = {
  ContentReady: 'ContentReady',
  ImageReady: 'ImageReady',
  Running: 'Running',
  LifecycleCommandsSucceeded: 'LifecycleCommandsSucceeded',
  DevcontainerSupported: 'DevcontainerSupported',
  /** True once the kernel's OOM killer killed a process in the running container (docs/design/0010). */
  OOMKilled: 'OOMKilled',
} as const;

/**
 * Reconciles one environment at a time (the work queue guarantees no two reconciles of one environment
 * run together). Throwing from {@link reconcile} means "retry with backoff"; terminal problems are
 * recorded in status (phase Failed) and the method returns normally.
 */
export class EnvironmentReconciler {
  private readonly dependencies: RunDependencies;
  private readonly logger: Logger;

  constructor(options: EnvironmentReconcilerOptions) {
    this.dependencies = {
      backend: options.backend,
      writeStatus: options.writeStatus,
      stopGraceSeconds: options.stopGraceSeconds,
      progressIntervalMs: options.progressIntervalMs ?? 500,
      announceDelayMs: options.announceDelayMs ?? 500,
    };
    this.logger = (options.logger ?? silentLogger).child({ component: 'environment-reconciler' });
  }

  /**
   * Takes `environment` to its desired phase, step by step, writing status after each step.
   * @returns the environment as last written (or as given when nothing changed).
   * @throws whatever a step threw for transient failures (the caller retries with backoff); an abort
   *   of `signal` rejects with the signal's reason.
   */
  async reconcile(environment: Environment, signal: AbortSignal): Promise<Environment> {
    const run = new Run(this.dependencies, environment, signal, this.logger.child({ environmentId: environment.metadata.id }));
    try {
      await run.execute();
    } catch (error) {
      if (isAbortError(error) || signal.aborted) throw error;
      if (error instanceof TerminalEnvironmentError) {
        run.logger.warn({ reason: error.reason, error: error.message }, 'environment failed');
        await run.fail(error);
      } else {
        run.logger.warn({ error: errorMessage(error) }, 'reconcile step failed, will retry');
        await run.retrying(error).catch(() => {});
        throw error;
      }
    } finally {
      // Nothing of this pass may be written after it returns (the next pass of this environment owns status).
      await run.close();
    }
    return run.current;
  }
}

interface RunDependencies {
  backend: EnvironmentBackend;
  writeStatus: StatusWriter;
  stopGraceSeconds: number;
  progressIntervalMs: number;
  announceDelayMs: number;
}

/** A change to status, applied to the status as last written when it is flushed. */
type StatusChange = (status: EnvironmentStatus) => EnvironmentStatus;
interface ChangeOptions {
  clearProgress?: boolean;
  conditions?: (conditions: Condition[]) => Condition[];
}

/**
 * One reconcile pass: holds the latest written object and serialises status writes. Results of steps are
 * staged and go out with the next write; step announcements are written only when the step is still running
 * after `announceDelayMs`. Status is observation, so a crash before a staged change is written loses nothing:
 * the next pass derives it from the host again.
 */
class Run {
  current: Environment;
  private readonly backend: EnvironmentBackend;
  private writes: Promise<unknown> = Promise.resolve();
  private staged: StatusChange[] = [];
  private announceTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private lastProgressWrite = 0;
  private progressPending: Progress | undefined;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dependencies: RunDependencies,
    environment: Environment,
    private readonly signal: AbortSignal,
    readonly logger: Logger,
  ) {
    this.current = environment;
    this.backend = dependencies.backend;
  }

  private get id(): string {
    return this.current.metadata.id;
  }

  /** Status as the next write will store it: the last written status with the staged changes applied. */
  private get status(): EnvironmentStatus {
    return this.staged.reduce((status, change) => change(status), this.current.status);
  }

  /** Runs one backend step and logs its duration (debug `step finished {step, durationMs}`). */
  private async timed<T>(step: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.logger.debug({ step, durationMs: Math.round(performance.now() - started) }, 'step finished');
    }
  }

  private context(): StepContext {
    return { signal: this.signal, logger: this.logger, onProgress: (progress) => this.progress(progress) };
  }

  async execute(): Promise<void> {
    const { spec, status, metadata } = this.current;
    const observed = await this.timed('observe', () => this.backend.observe(this.id));
    // Disk usage goes out with this pass's next write (or alone at its end) when it moved enough to matter.
    if (spec.desiredPhase !== 'Deleted' && diskStatusDiffers(status.disk, observed.disk)) this.stage({ disk: observed.disk });
    switch (spec.desiredPhase) {
      case 'Deleted':
        await this.delete(observed);
        break;
      case 'Stopped':
        await this.stop(observed);
        break;
      case 'Running':
        // A terminal failure is not retried until the spec changes (STYLE.md "Errors").
        if (status.phase === 'Failed' && status.observedGeneration === metadata.generation) return;
        await this.run(observed);
        break;
    }
    await this.flush();
  }

  private async delete(observed: ObservedEnvironment): Promise<void> {
    if (!observed.exists) {
      if (this.status.phase !== 'Deleted') await this.write({ phase: 'Deleted' }, { clearProgress: true });
      return;
    }
    this.announce({ phase: 'Deleting' });
    await this.backend.remove(this.id, this.context());
    await this.write(
      { phase: 'Deleted' },
      {
        clearProgress: true,
        conditions: (conditions) => setCondition(conditions, ConditionTypes.Running, 'False', 'Deleted', 'The environment was deleted.'),
      },
    );
    this.logger.info({}, 'environment deleted');
  }

  private async stop(observed: ObservedEnvironment): Promise<void> {
    const state = observed.container.state;
    if (state !== 'absent') {
      this.announce({ phase: 'Stopping' });
      await this.backend.stop(this.id, this.dependencies.stopGraceSeconds, this.context());
      this.logger.info({}, 'environment stopped');
    }
    const phase = this.status.phase;
    // A Failed environment that is stopped is simply Stopped: starting it again retries from where it failed.
    if (phase !== 'Stopped' || state !== 'absent' || this.status.observedGeneration !== this.current.metadata.generation) {
      await this.write(
        { phase: 'Stopped', message: undefined },
        {
          clearProgress: true,
          conditions: (conditions) =>
            setCondition(conditions, ConditionTypes.Running, 'False', 'Stopped', 'The environment is stopped; its disk state is kept.'),
        },
      );
    }
  }

  private async run(observed: ObservedEnvironment): Promise<void> {
    const context = this.context();
    const firstStart = !observed.lifecycle.createDone;
    const startingPhase: EnvironmentPhase = firstStart ? 'Creating' : 'Starting';

    if (!observed.contentReady) {
      this.announce({ phase: 'Creating', progress: { step: 'clone', message: `Cloning ${this.current.spec.source.git.url}` } });
      // The host objects that need neither content nor image are made while the repository is cloned.
      const prepareHost = this.backend.prepareHost?.bind(this.backend);
      const [cloned, host] = await Promise.allSettled([
        this.timed('clone', () => this.backend.prepareContent(this.current, context)),
        observed.container.state !== 'running' && prepareHost
          ? this.timed('prepare-host', () => prepareHost(this.current, context))
          : Promise.resolve(),
      ]);
      if (cloned.status === 'rejected') throw cloned.reason;
      if (host.status === 'rejected') throw host.reason;
      const { commit } = cloned.value;
      this.stage(
        { ...(commit ? { commit } : {}) },
        {
          conditions: (conditions) =>
            setCondition(conditions, ConditionTypes.ContentReady, 'True', 'Cloned', 'The repository is cloned into the workspace folder.'),
        },
      );
    } else if (observed.commit && this.status.commit !== observed.commit) {
      this.stage({ commit: observed.commit });
    }

    let resolved = observed.resolved;
    if (!resolved) {
      this.announce({ phase: startingPhase, progress: { step: 'image', message: 'Resolving devcontainer.json and pulling the image' } });
      resolved = await this.timed('resolve', () => this.backend.resolve(this.current, context));
    }
    if (!sameResolvedStatus(this.status, resolved) || !isTrue(this.status.conditions, ConditionTypes.ImageReady)) {
      const ready = resolved;
      this.stage((status) => resolvedStatus(status, ready), {
        clearProgress: true,
        conditions: (conditions) => resolvedConditions(conditions, ready),
      });
    }

    let container = observed.container;
    let memory = observed.memory;
    if (container.state !== 'running') {
      this.announce({ phase: startingPhase, progress: { step: 'start', message: 'Starting the container' } });
      await this.timed('start', () => this.backend.start(this.current, context));
      const started = await this.backend.observe(this.id);
      container = started.container;
      memory = started.memory;
      // A new environment's disk exists only now: its usage goes out with the Running write.
      if (diskStatusDiffers(this.status.disk, started.disk)) this.stage({ disk: started.disk });
      if (container.state !== 'running') throw new Error(`container is ${container.state} right after start`);
      // A start counts as activity, so the inactivity timeout measures from here.
      const now = new Date().toISOString();
      const lastActivityTime = [this.status.lastActivityTime, now]
        .filter((value): value is string => !!value)
        .sort()
        .pop();
      this.stage(
        { ...(container.startedTime ? { startedTime: container.startedTime } : {}), ...(lastActivityTime ? { lastActivityTime } : {}) },
        {
          conditions: (conditions) =>
            setCondition(conditions, ConditionTypes.Running, 'True', 'ContainerRunning', 'The container is running.'),
        },
      );
    }

    const oom = oomCondition(this.status.conditions, memory);
    if (oom) {
      if (oom.status === 'True')
        this.logger.warn({ oomKills: memory?.oomKills, process: memory?.lastOomKill?.process }, 'process killed for lack of memory');
      this.stage(
        {},
        { conditions: (conditions) => setCondition(conditions, ConditionTypes.OOMKilled, oom.status, oom.reason, oom.message) },
      );
    }

    let failure = observed.lifecycle.failure;
    if (!observed.lifecycle.createDone) {
      this.announce({
        phase: startingPhase,
        progress: { step: 'lifecycle', message: 'Running onCreate, updateContent and postCreate commands' },
      });
      const outcome = await this.timed('lifecycle-create', () => this.backend.runLifecycle(this.current, 'create', context));
      if (!outcome.succeeded) failure = outcome.message ?? 'a lifecycle command failed';
    }
    if (container.startId === undefined || observed.lifecycle.postStartDoneFor !== container.startId) {
      this.announce({ phase: startingPhase, progress: { step: 'lifecycle', message: 'Running postStartCommand' } });
      const outcome = await this.timed('lifecycle-start', () => this.backend.runLifecycle(this.current, 'start', context));
      if (!outcome.succeeded) failure = outcome.message ?? 'postStartCommand failed';
    }

    const status = this.status;
    const needsWrite =
      status.phase !== 'Running' ||
      status.observedGeneration !== this.current.metadata.generation ||
      status.progress !== undefined ||
      !isTrue(status.conditions, ConditionTypes.Running) ||
      lifecycleConditionDiffers(status.conditions, failure) ||
      (container.startedTime !== undefined && status.startedTime !== container.startedTime);
    if (!needsWrite) return this.flush();
    const writeStarted = performance.now();
    await this.write(
      { phase: 'Running', message: undefined, ...(container.startedTime ? { startedTime: container.startedTime } : {}) },
      {
        clearProgress: true,
        conditions: (conditions) => {
          let next = setCondition(conditions, ConditionTypes.Running, 'True', 'ContainerRunning', 'The container is running.');
          // Like the reference CLI, a failing lifecycle command leaves the environment running: the user
          // can inspect it (`warren env logs`) and fix it from inside.
          next = failure
            ? setCondition(
                next,
                ConditionTypes.LifecycleCommandsSucceeded,
                'False',
                'LifecycleCommandFailed',
                `${failure}; see \`warren env logs\`.`,
              )
            : setCondition(next, ConditionTypes.LifecycleCommandsSucceeded, 'True', 'Succeeded', 'All lifecycle commands succeeded.');
          return next;
        },
      },
    );
    this.logger.info({ writeMs: Math.round(performance.now() - writeStarted) }, 'environment running');
  }

  /** Records a terminal failure: phase Failed, condition False, observedGeneration = generation. */
  async fail(error: TerminalEnvironmentError): Promise<void> {
    this.cancelProgress();
    await this.writes.catch(() => {});
    await this.write(
      { phase: 'Failed', message: error.message },
      {
        clearProgress: true,
        conditions: (conditions) => setCondition(conditions, error.conditionType, 'False', error.reason, error.message),
      },
    );
  }

  /**
   * Records a transient failure so the user sees why progress stalls: `status.message` says what failed and
   * that Warren retries (phase and progress stay). The Running write clears it.
   */
  async retrying(error: unknown): Promise<void> {
    this.cancelProgress();
    await this.writes.catch(() => {});
    const text = errorMessage(error).replace(/\s+/g, ' ').trim();
    await this.write({ message: `retrying after an error: ${text.length > 300 ? `${text.slice(0, 300)}…` : text}` });
  }

  /** Ends the pass: drops what is staged and pending (a retry derives it again) and waits for writes in flight. */
  async close(): Promise<void> {
    this.closed = true;
    this.cancelAnnouncement();
    this.cancelProgress();
    this.staged = [];
    await this.writes.catch(() => {});
  }

  /**
   * A status change: `changes` applied (an `undefined` value removes the field), `observedGeneration` set to
   * the generation being acted on, conditions updated, progress removed when asked.
   */
  private change(
    changes: Partial<EnvironmentStatus> | ((status: EnvironmentStatus) => Partial<EnvironmentStatus>),
    options: ChangeOptions,
  ): StatusChange {
    const generation = this.current.metadata.generation;
    return (base) => {
      const delta = typeof changes === 'function' ? changes(base) : changes;
      const status: EnvironmentStatus = {
        ...base,
        ...delta,
        observedGeneration: generation,
        conditions: options.conditions ? options.conditions(base.conditions) : base.conditions,
      };
      for (const key of Object.keys(delta) as Array<keyof EnvironmentStatus>) {
        if (delta[key] === undefined) delete status[key];
      }
      if (options.clearProgress) delete status.progress;
      return status;
    };
  }

  /** Stages a change for the next write. */
  private stage(
    changes: Partial<EnvironmentStatus> | ((status: EnvironmentStatus) => Partial<EnvironmentStatus>),
    options: ChangeOptions = {},
  ): void {
    this.staged.push(this.change(changes, options));
  }

  /** Stages the announcement of a step and writes it (with everything staged) if the step is still running after `announceDelayMs`. */
  private announce(changes: Partial<EnvironmentStatus>): void {
    this.stage(changes);
    const write = () =>
      this.flush().catch((error: unknown) => this.logger.debug({ error: errorMessage(error) }, 'status announcement write failed'));
    if (this.dependencies.announceDelayMs <= 0) return void write();
    if (this.announceTimer) return;
    this.announceTimer = setTimeout(() => {
      this.announceTimer = undefined;
      if (this.closed || this.signal.aborted) return;
      void write();
    }, this.dependencies.announceDelayMs);
  }

  /** Writes the current status with `changes` (and everything staged before them) applied; pending progress is dropped. */
  private async write(changes: Partial<EnvironmentStatus>, options: ChangeOptions = {}): Promise<void> {
    this.stage(changes, options);
    await this.flush();
  }

  /** Writes everything staged as one status update (nothing when nothing is staged), serialised with other writes. */
  private async flush(): Promise<void> {
    this.cancelAnnouncement();
    this.cancelProgress();
    const changes = this.staged.splice(0);
    if (changes.length === 0) return this.writes.then(() => undefined);
    const next = this.writes.then(async () => {
      const status = changes.reduce((current, change) => change(current), this.current.status);
      this.current = await this.dependencies.writeStatus(this.current, status);
    });
    this.writes = next.catch(() => {});
    await next;
  }

  private cancelAnnouncement(): void {
    if (this.announceTimer) clearTimeout(this.announceTimer);
    this.announceTimer = undefined;
  }

  /** Throttled progress: at most one write per interval, the latest value wins; it carries what is staged. */
  private progress(progress: Progress): void {
    this.progressPending = progress;
    if (this.progressTimer) return;
    const wait = Math.max(0, this.lastProgressWrite + this.dependencies.progressIntervalMs - Date.now());
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      const pending = this.progressPending;
      this.progressPending = undefined;
      if (!pending || this.closed || this.signal.aborted) return;
      this.lastProgressWrite = Date.now();
      this.cancelAnnouncement();
      const changes = this.staged.splice(0);
      const next = this.writes.then(async () => {
        const status = changes.reduce((current, change) => change(current), this.current.status);
        this.current = await this.dependencies.writeStatus(this.current, { ...status, progress: pending });
      });
      this.writes = next.catch((error: unknown) => this.logger.debug({ error: errorMessage(error) }, 'progress write failed'));
    }, wait);
  }

  private cancelProgress(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.progressPending = undefined;
  }
}

/** Least change of `status.disk.usedBytes` that is written: 1 MiB or 1 % of the limit, whichever is larger. */
function diskStatusDiffers(written: EnvironmentStatus['disk'], observed: ObservedEnvironment['disk']): boolean {
  if (!written || !observed) return written !== observed;
  const step = Math.max(1024 * 1024, observed.limitBytes / 100);
  return written.limitBytes !== observed.limitBytes || Math.abs(written.usedBytes - observed.usedBytes) >= step;
}

function isTrue(conditions: readonly Condition[], type: string): boolean {
  return conditions.some((condition) => condition.type === type && condition.status === 'True');
}

function lifecycleConditionDiffers(conditions: readonly Condition[], failure: string | undefined): boolean {
  const condition = conditions.find((entry) => entry.type === ConditionTypes.LifecycleCommandsSucceeded);
  if (!condition) return true;
  return failure ? condition.status !== 'False' || !condition.message.startsWith(failure) : condition.status !== 'True';
}

function resolvedStatus(status: EnvironmentStatus, resolved: ResolvedEnvironment): Partial<EnvironmentStatus> {
  return {
    devcontainer: {
      ...(resolved.configPath ? { configPath: resolved.configPath } : {}),
      image: resolved.image,
      ...(resolved.imageDigest ? { imageDigest: resolved.imageDigest } : {}),
      remoteUser: resolved.remoteUser,
      workspaceFolder: resolved.workspaceFolder,
    },
    ports: mergePorts(status.ports, resolved),
  };
}

function mergePorts(existing: EnvironmentStatus['ports'], resolved: ResolvedEnvironment): EnvironmentStatus['ports'] {
  const others = existing.filter((port) => port.source !== 'Devcontainer');
  const fromConfig = resolved.ports
    .filter((port) => !others.some((other) => other.port === port.port))
    .map((port) => ({
      port: port.port,
      visibility: 'Owner' as const,
      source: 'Devcontainer' as const,
      ...(port.label ? { label: port.label } : {}),
    }));
  return [...others, ...fromConfig];
}

function sameResolvedStatus(status: EnvironmentStatus, resolved: ResolvedEnvironment): boolean {
  const wanted = resolvedStatus(status, resolved);
  return (
    JSON.stringify(status.devcontainer) === JSON.stringify(wanted.devcontainer) &&
    JSON.stringify(status.ports) === JSON.stringify(wanted.ports)
  );
}

function resolvedConditions(conditions: Condition[], resolved: ResolvedEnvironment): Condition[] {
  let next = setCondition(conditions, ConditionTypes.ImageReady, 'True', 'Pulled', `Image ${resolved.image} is ready.`);
  next =
    resolved.unsupported.length > 0
      ? setCondition(
          next,
          ConditionTypes.DevcontainerSupported,
          'False',
          'UnsupportedProperties',
          `Warren does not honour: ${resolved.unsupported.map((entry) => `${entry.property} (${entry.source}: ${entry.message})`).join('; ')}.`,
        )
      : setCondition(
          next,
          ConditionTypes.DevcontainerSupported,
          'True',
          'Supported',
          'Every property of the devcontainer configuration is honoured.',
        );
  return next;
}
