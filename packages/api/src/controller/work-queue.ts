// The work queue of a controller: object keys waiting to be reconciled, with client-go's workqueue semantics
// (deduplicated keys, one item in flight per key, delayed and rate-limited adds, shutdown).
import { type Logger, errorMessage, isAbortError, silentLogger } from '@warren/base';
import { realTimeSource, type TimerHandle, type TimeSource } from './clock.js';
import { defaultControllerRateLimiter, type RateLimiter } from './rate-limiter.js';

/** Options of {@link WorkQueue}. */
export interface WorkQueueOptions {
  /** Delays of {@link WorkQueue.addRateLimited} (default {@link defaultControllerRateLimiter}). */
  rateLimiter?: RateLimiter;
  /** Timers of {@link WorkQueue.addAfter} (default the platform's). */
  time?: TimeSource;
}

/** Options of {@link WorkQueue.run}. */
export interface WorkQueueRunOptions {
  /** Stops the workers (and is passed to the handler). The queue is shut down when it aborts. */
  signal: AbortSignal;
  /** Keys processed at once (default 1); one key is never processed by two workers at once. */
  concurrency?: number;
  /** Where failed reconciles are logged (warn `reconcile failed; retrying {key, failures, retryInMs, error}`). */
  logger?: Logger;
  /**
   * Called after each handler run with its duration in milliseconds (from the queue's {@link TimeSource}) and
   * whether it resolved (`success`) or threw (`error`; a cancellation after the signal aborted counts as
   * `error` too). For metrics (the runner's reconcile histogram); must not throw.
   */
  onProcessed?: (key: string, durationMs: number, outcome: 'success' | 'error') => void;
}

/**
 * Keys (object ids) waiting to be processed, as client-go's rate-limited work queue:
 * - A key is held once: adding a key that is already waiting does nothing ("deduplicated").
 * - A key handed out by {@link get} is "in flight" until {@link done}; adding it meanwhile marks it, and it
 *   is queued again at `done`, so it is never processed by two workers at once and no change is lost.
 * - Keys are handed out in the order they became ready (FIFO).
 * - {@link addAfter} queues a key after a delay (the earlier of two pending delays wins); {@link addRateLimited}
 *   uses the rate limiter's delay (per-key exponential backoff and an overall token bucket) and
 *   {@link forget} resets the key's backoff after a success.
 * Departures from client-go, both because a level-triggered key needs one run, not one per trigger: an
 * {@link add} cancels the key's pending delayed add (it runs now instead), and a delayed add of a key that is
 * already waiting (or marked while in flight) is dropped. {@link shutDown} drops waiting keys instead of
 * draining them: a restarted controller lists everything again.
 */
export class WorkQueue {
  /** Keys ready to be handed out, oldest first; each at most once. */
  private readonly queue: string[] = [];
  /** Keys that need processing: the waiting ones, and in-flight ones added again. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly delayed = new Map<string, { handle: TimerHandle; readyAt: number }>();
  private getters: Array<() => void> = [];
  private idleWaiters: Array<() => void> = [];
  private shuttingDown = false;
  private readonly rateLimiter: RateLimiter;
  private readonly time: TimeSource;

  constructor(options: WorkQueueOptions = {}) {
    this.time = options.time ?? realTimeSource;
    this.rateLimiter = options.rateLimiter ?? defaultControllerRateLimiter({ time: this.time });
  }

  /** Queues `key` now (nothing when it is already waiting; after its `done` when it is in flight). */
  add(key: string): void {
    if (this.shuttingDown) return;
    this.cancelDelayed(key);
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.queue.push(key);
    this.wakeOne();
  }

  /**
   * Queues `key` after `delayMs` milliseconds. When a delayed add of `key` is already pending, the earlier
   * of the two stays. Dropped when `key` is waiting already (it is processed sooner anyway).
   */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    if (delayMs <= 0) return this.add(key);
    const readyAt = this.time.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.readyAt <= readyAt) return;
    if (pending) this.time.clearTimeout(pending.handle);
    const handle = this.time.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { handle, readyAt });
  }

  /** Queues `key` after the rate limiter's delay (counting one more failure of `key`). @returns the delay in ms. */
  addRateLimited(key: string): number {
    const delayMs = this.rateLimiter.when(key);
    this.addAfter(key, delayMs);
    return delayMs;
  }

  /** Resets the backoff of `key` (call after it was processed successfully). Does not remove a queued key. */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  /** Failures of `key` counted by {@link addRateLimited} since its last {@link forget}. */
  numRequeues(key: string): number {
    return this.rateLimiter.numRequeues(key);
  }

  /** Number of keys waiting to be handed out (not counting in-flight or delayed ones). */
  get length(): number {
    return this.queue.length;
  }

  /** True once {@link shutDown} was called. */
  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Hands out the oldest waiting key, waiting for one if none is; the caller must call {@link done} with it.
   * @returns the key, or undefined once the queue is shut down.
   */
  async get(): Promise<string | undefined> {
    for (;;) {
      if (this.shuttingDown) return undefined;
      const key = this.queue.shift();
      if (key !== undefined) {
        this.dirty.delete(key);
        this.processing.add(key);
        return key;
      }
      await new Promise<void>((resolve) => this.getters.push(resolve));
    }
  }

  /** Ends the processing of `key`; it is queued again if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) {
      this.queue.push(key);
      this.wakeOne();
    }
    this.checkIdle();
  }

  /** Resolves when no key is waiting or in flight (pending delayed adds do not count). For tests. */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops the queue: later adds are ignored, pending delayed adds cancelled, waiting keys dropped, and every
   * {@link get} (waiting or later) returns undefined. Keys in flight finish normally. Idempotent.
   */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { handle } of this.delayed.values()) this.time.clearTimeout(handle);
    this.delayed.clear();
    this.queue.length = 0;
    this.dirty.clear();
    const getters = this.getters;
    this.getters = [];
    for (const wake of getters) wake();
    this.checkIdle();
  }

  /**
   * Processes keys with `handler` until `options.signal` aborts (then shuts the queue down and resolves when
   * the handlers in flight have returned). Up to `concurrency` keys are processed at once. A handler that
   * resolves makes the queue {@link forget} the key; one that throws has the key re-added with
   * {@link addRateLimited}, except for a cancellation after the signal aborted.
   */
  async run(handler: (key: string, signal: AbortSignal) => Promise<void>, options: WorkQueueRunOptions): Promise<void> {
    const { signal } = options;
    const logger = options.logger ?? silentLogger;
    const onAbort = () => this.shutDown();
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const worker = async () => {
      for (let key = await this.get(); key !== undefined; key = await this.get()) {
        const started = this.time.now();
        try {
          await handler(key, signal);
          this.forget(key);
          options.onProcessed?.(key, this.time.now() - started, 'success');
        } catch (error) {
          options.onProcessed?.(key, this.time.now() - started, 'error');
          if (!(signal.aborted && isAbortError(error)) && !this.shuttingDown) {
            const retryInMs = this.addRateLimited(key);
            logger.warn({ key, failures: this.numRequeues(key), retryInMs, error: errorMessage(error) }, 'reconcile failed; retrying');
          }
        } finally {
          this.done(key);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 1) }, worker));
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private cancelDelayed(key: string): void {
    const pending = this.delayed.get(key);
    if (!pending) return;
    this.time.clearTimeout(pending.handle);
    this.delayed.delete(key);
  }

  private wakeOne(): void {
    this.getters.shift()?.();
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.processing.size === 0;
  }

  private checkIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
