// A deduplicating work queue of object ids with per-key retry backoff (controller-runtime's workqueue, reduced).
import { backoffMs, errorMessage, isAbortError, type Logger } from '@warren/base';

/**
 * Keys waiting to be reconciled. A key queued several times before it is processed is processed once;
 * a key added while it is being processed is processed again afterwards (so no change is lost).
 * Processing is sequential: one key at a time, in insertion order.
 */
export class WorkQueue {
  private readonly queued = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private wake: (() => void) | undefined;

  /** Queues `key` now. */
  add(key: string): void {
    this.queued.add(key);
    this.wake?.();
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
   * Processes keys with `handler` until `signal` aborts. A handler that throws is retried with exponential
   * backoff (200 ms doubling to 30 s, `backoffMs`); success resets the key's backoff.
   */
  async run(signal: AbortSignal, handler: (key: string) => Promise<void>, logger: Logger): Promise<void> {
    while (!signal.aborted) {
      const next = this.queued.values().next();
      if (next.done) {
        await new Promise<void>((resolve) => {
          const onAbort = () => resolve();
          signal.addEventListener('abort', onAbort, { once: true });
          this.wake = () => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          };
        });
        this.wake = undefined;
        continue;
      }
      const key = next.value;
      this.queued.delete(key);
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
      }
    }
  }

  /** Cancels pending delayed adds. */
  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.wake?.();
  }
}
