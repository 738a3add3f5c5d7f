// Runs the server's controllers while this process holds the `controllers` lease, so that with several
// server processes on one PostgreSQL exactly one of them acts (DESIGN.md "Control flow", step 5).
import { Informer, WorkQueue, type InformerEvent, type Kind, type Resource, type ResourceByKind } from '@warren/api';
import { errorMessage, sleep, type Logger } from '@warren/base';
import type { ResourceStore } from '../storage/index.js';
import { systemClock, type Clock } from './clock.js';
import type { Controller, ControllerContext } from './controller.js';
import { GarbageCollector } from './garbage-collector.js';
import { InactivityController } from './inactivity.js';
import { RunnerLivenessController } from './runner-liveness.js';
import { SchedulerController } from './scheduler.js';
import { storeListerWatcher } from './store-lister-watcher.js';

/** Options of {@link runControllers} and {@link ControllerManager}. */
export interface ControllerOptions {
  store: ResourceStore;
  logger: Logger;
  /** Time source of the time-based rules (default: wall clock). */
  clock?: Clock;
  /** Milliseconds between periodic passes over every object (time-based rules, repair). Default 5 000. */
  checkIntervalMs?: number;
  /** Milliseconds between full relists from the store (missed events do not matter). Default 60 000. */
  resyncIntervalMs?: number;
  /** Heartbeat age in seconds after which a runner is Inactive. Default 30. */
  runnerHeartbeatTimeoutSeconds?: number;
}

/** Options of {@link ControllerManager}. */
export interface ControllerManagerOptions extends ControllerOptions {
  /** Lease name (default `controllers`). */
  leaseName?: string;
  /** Milliseconds between attempts to take the lease while another process holds it. Default 3 000. */
  leaseRetryMs?: number;
}

/**
 * Runs the scheduler, runner liveness, inactivity timeout and garbage collector until `signal` aborts:
 * informers (list+watch caches) feed one work queue per controller; every `checkIntervalMs` every key is
 * queued again and every `resyncIntervalMs` the caches are relisted. Resolves after everything stopped.
 * Call it only while holding the lease (see {@link ControllerManager}).
 */
export async function runControllers(options: ControllerOptions, signal: AbortSignal): Promise<void> {
  const logger = options.logger.child({ component: 'controllers' });
  const controllers: Controller[] = [];
  const queues: WorkQueue[] = [];
  // Every change of every kind goes to every controller, which names the keys it affects.
  const route = (kind: Kind) => (event: InformerEvent<Resource>) => {
    controllers.forEach((controller, index) => {
      for (const key of controller.keysFor(kind, event.object, event.type === 'Deleted')) queues[index]!.add(key);
    });
  };
  const informer = <K extends Kind>(kind: K): Informer<ResourceByKind[K]> => {
    const created = new Informer<ResourceByKind[K]>({
      listerWatcher: storeListerWatcher(options.store, kind),
      name: kind,
      logger,
      relistIntervalMs: options.resyncIntervalMs ?? 60_000,
    });
    created.subscribe(route(kind));
    return created;
  };
  const context: ControllerContext = {
    store: options.store,
    clock: options.clock ?? systemClock,
    logger,
    environments: informer('Environment'),
    runners: informer('Runner'),
    classes: informer('EnvironmentClass'),
  };
  controllers.push(
    new SchedulerController(context),
    new RunnerLivenessController(context, options.runnerHeartbeatTimeoutSeconds ?? 30),
    new InactivityController(context),
    new GarbageCollector(context),
  );
  for (const _ of controllers) queues.push(new WorkQueue());
  const informers = [context.environments, context.runners, context.classes];
  const informerRuns = informers.map((each) => each.run(signal));
  const timers: NodeJS.Timeout[] = [];
  try {
    await Promise.race([Promise.all(informers.map((each) => each.whenSynced())), sleepUntilAborted(signal)]);
    if (signal.aborted) return;
    const pass = () =>
      controllers.forEach((controller, index) => {
        for (const key of controller.allKeys()) queues[index]!.add(key);
      });
    pass();
    timers.push(setInterval(pass, options.checkIntervalMs ?? 5_000));
    logger.info({ controllers: controllers.map((controller) => controller.name) }, 'controllers started');
    await Promise.all(
      controllers.map((controller, index) =>
        queues[index]!.run((key) => controller.reconcile(key), {
          signal,
          logger: logger.child({ controller: controller.name }),
          ...(controller.concurrency === undefined ? {} : { concurrency: controller.concurrency }),
        }),
      ),
    );
  } finally {
    for (const timer of timers) clearInterval(timer);
    for (const queue of queues) queue.shutDown();
    await Promise.all(informerRuns);
    logger.info({}, 'controllers stopped');
  }
}

function sleepUntilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * Keeps trying to take the lease (every `leaseRetryMs`) and runs {@link runControllers} while it holds it.
 * When the lease is lost (PostgreSQL connection failure) the controllers stop at once and the manager goes
 * back to trying; another process may have taken over meanwhile. On PGlite (one process) the lease is
 * always free unless another manager of the same process holds it.
 */
export class ControllerManager {
  private readonly stopController = new AbortController();
  private loop: Promise<void> | undefined;
  private leading = false;
  private readonly logger: Logger;

  constructor(private readonly options: ControllerManagerOptions) {
    this.logger = options.logger.child({ component: 'controller-manager' });
  }

  /** True while this manager holds the lease and runs the controllers. */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts the lease loop in the background (idempotent). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops the controllers, releases the lease and resolves when all is stopped. */
  async stop(): Promise<void> {
    this.stopController.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const stop = this.stopController.signal;
    const leaseName = this.options.leaseName ?? 'controllers';
    const retryMs = this.options.leaseRetryMs ?? 3_000;
    while (!stop.aborted) {
      let lease;
      try {
        lease = await this.options.store.tryAcquireLease(leaseName);
      } catch (error) {
        this.logger.warn({ error: errorMessage(error) }, 'taking the controllers lease failed');
      }
      if (!lease) {
        await sleep(retryMs, stop).catch(() => {});
        continue;
      }
      this.leading = true;
      this.logger.info({ lease: leaseName }, 'lease acquired; running controllers');
      try {
        await runControllers(this.options, AbortSignal.any([stop, lease.signal]));
      } catch (error) {
        this.logger.error({ error: errorMessage(error) }, 'controllers failed');
      } finally {
        this.leading = false;
        await lease.release().catch(() => {});
      }
      if (!stop.aborted) {
        this.logger.warn({ lease: leaseName }, 'lease lost; controllers stopped');
        await sleep(retryMs, stop).catch(() => {});
      }
    }
  }
}
