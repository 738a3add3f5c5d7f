// A deduplicating work queue of object ids with per-key retry backoff (controller-runtime's workqueue, reduced).
import { backoffMs, errorMessage, isAbortError, type Logger } from '@warren/base';

/**
 * Keys waiting to be reconciled. A key queued several times before it is processed is processed once;
 * a key added while it is being processed is processed again afterwards (so no change is lost).
 * Keys are taken in insertion order by up to `concurrency` workers (see {@link run}); one key is never
 * processed by two workers at once.
 */
export class WorkQueue {
  private readonly queued = new Set<string>();
  /** Keys a worker is processing now. */
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Idle workers waiting for a key (or for the abort of their run). */
  private readonly waiting = new Set<() => void>();

  /** Queues `key` now. */
  add(key: string): void {
    this.queued.add(key);
    this.wakeAll();
  }

  /** Queues `key` after `delayMs` milliseconds (a later call replaces an earlier pending one). */
  addAfter(key: string, delayMs: number): void {
    clearTimeout(this.timers.get(key));
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, timer);
  }

  /** Number of keys waiting. */
  get length(): number {
    return this.queued.size;
  }

  /**
   * Processes keys with `handler` until `signal` aborts, with up to `concurrency` handlers running at once
   * (default 1: strictly one key after another). A handler that throws is retried with exponential backoff
   * (200 ms doubling to 30 s, `backoffMs`); success resets the key's backoff.
   */
  async run(signal: AbortSignal, handler: (key: string) => Promise<void>, logger: Logger, concurrency = 1): Promise<void> {
    const onAbort = () => this.wakeAll();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.all(Array.from({ length: Math.max(1, concurrency) }, () => this.work(signal, handler, logger)));
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async work(signal: AbortSignal, handler: (key: string) => Promise<void>, logger: Logger): Promise<void> {
    while (!signal.aborted) {
      const key = this.take();
      if (key === undefined) {
        await new Promise<void>((resolve) => this.waiting.add(resolve));
        continue;
      }
      this.processing.add(key);
      try {
        await handler(key);
        this.failures.delete(key);
      } catch (error) {
        if (signal.aborted && isAbortError(error)) return;
        const attempt = this.failures.get(key) ?? 0;
        this.failures.set(key, attempt + 1);
        const delayMs = backoffMs(attempt);
        logger.warn({ key, attempt, delayMs, error: errorMessage(error) }, 'reconcile failed; retrying');
        this.addAfter(key, delayMs);
      } finally {
        this.processing.delete(key);
        // The key may have been queued again while it was processed; an idle worker can take it now.
        if (this.queued.has(key)) this.wakeAll();
      }
    }
  }

  /** Removes and returns the oldest queued key no worker is processing. */
  private take(): string | undefined {
    for (const key of this.queued) {
      if (this.processing.has(key)) continue;
      this.queued.delete(key);
      return key;
    }
    return undefined;
  }

  private wakeAll(): void {
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const wake of waiting) wake();
  }

  /** Cancels pending delayed adds. */
  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.wakeAll();
  }
}
