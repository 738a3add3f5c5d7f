// A keyed work queue in the manner of client-go's workqueue: per-key dedupe (the latest item wins), one
// worker per key at a time, bounded parallelism, per-key exponential backoff on failure.
import { type Logger, backoffMs, errorMessage, isAbortError, silentLogger } from '@warren/base';

/** Options of {@link WorkQueue}. */
export interface WorkQueueOptions<T> {
  /** Processes the latest item of `key`; throwing schedules a retry with backoff. */
  process: (key: string, item: T, signal: AbortSignal) => Promise<void>;
  /** Items processed in parallel (distinct keys); default 4. */
  concurrency?: number;
  /** First retry delay in milliseconds (default 500); doubled per failure up to `maxDelayMs`. */
  baseDelayMs?: number;
  /** Longest retry delay in milliseconds (default 60 000). */
  maxDelayMs?: number;
  logger?: Logger;
}

/**
 * Deduplicating, per-key serialised work queue.
 * - `add(key, item)` stores `item` as the key's latest and queues the key unless already queued;
 *   if the key is being processed, it is processed again afterwards with the latest item.
 * - A failed key is retried after `backoffMs(failures)` unless a newer `add` comes first.
 * - `close()` aborts running work (their signal fires) and waits for the workers.
 */
export class WorkQueue<T> {
  private readonly items = new Map<string, T>();
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly running = new Set<Promise<void>>();
  private readonly controller = new AbortController();
  private readonly concurrency: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly logger: Logger;
  private idleWaiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly options: WorkQueueOptions<T>) {
    this.concurrency = options.concurrency ?? 4;
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.logger = (options.logger ?? silentLogger).child({ component: 'work-queue' });
  }

  /** Queues `key` with `item` as its latest value (a pending retry is replaced by this fresh run). */
  add(key: string, item: T): void {
    if (this.closed) return;
    this.items.set(key, item);
    const timer = this.timers.get(key);
    if (timer) {
      clearTimeout(timer);
      this.timers.delete(key);
    }
    this.enqueue(key);
  }

  /**
   * Replaces the latest item of a key the queue already holds without queueing it (a newer copy of an object
   * that needs no work, e.g. the echo of one's own write). Unknown keys are ignored.
   */
  update(key: string, item: T): void {
    if (!this.closed && this.items.has(key)) this.items.set(key, item);
  }

  /** The latest item stored for `key`, if any. */
  latest(key: string): T | undefined {
    return this.items.get(key);
  }

  /** Every key with a stored item. */
  keys(): string[] {
    return [...this.items.keys()];
  }

  /** Forgets `key` (its item and failure count) once it is not being processed; queued runs still happen. */
  forget(key: string): void {
    this.failures.delete(key);
    if (!this.processing.has(key) && !this.queued.has(key)) this.items.delete(key);
  }

  /** Number of consecutive failures of `key`. */
  failureCount(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Resolves when nothing is queued or processing (pending retries do not count). For tests. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops accepting work, aborts running work, cancels retries, and waits for the workers to finish. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
    this.controller.abort(new DOMException('work queue closed', 'AbortError'));
    await Promise.allSettled([...this.running]);
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.processing.size === 0;
  }

  private enqueue(key: string): void {
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.processing.size < this.concurrency) {
      const index = this.queue.findIndex((key) => !this.processing.has(key));
      if (index < 0) break;
      const [key] = this.queue.splice(index, 1) as [string];
      this.queued.delete(key);
      this.processing.add(key);
      const work = this.work(key);
      this.running.add(work);
      void work.finally(() => this.running.delete(work));
    }
    if (this.isIdle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  private async work(key: string): Promise<void> {
    const item = this.items.get(key) as T;
    try {
      await this.options.process(key, item, this.controller.signal);
      this.failures.delete(key);
    } catch (error) {
      if (!(this.closed && (isAbortError(error) || this.controller.signal.aborted))) {
        const failures = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, failures);
        const delay = backoffMs(failures - 1, this.baseDelayMs, this.maxDelayMs);
        this.logger.warn({ key, failures, retryInMs: delay, error: errorMessage(error) }, 'work item failed');
        if (!this.dirty.has(key) && !this.closed) {
          this.timers.set(
            key,
            setTimeout(() => {
              this.timers.delete(key);
              this.enqueue(key);
            }, delay),
          );
        }
      }
    } finally {
      this.processing.delete(key);
      if (this.dirty.delete(key) && !this.closed) this.enqueue(key);
      this.pump();
    }
  }
}
