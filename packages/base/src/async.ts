// Small async helpers with cancellation through AbortSignal.

/**
 * Resolves after `ms` milliseconds, or rejects with the signal's reason when `signal` aborts first.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** True when `error` is the result of an AbortSignal firing (a cancellation, not a failure). */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

/**
 * Exponential backoff delay in milliseconds for retry number `attempt` (0-based):
 * `min(maxMs, baseMs * 2^attempt)` with ±20 % jitter so retries of many objects spread out.
 */
export function backoffMs(attempt: number, baseMs = 200, maxMs = 30_000): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(raw * (0.8 + Math.random() * 0.4));
}

/**
 * Deduplicates concurrent calls by key: while a promise for `key` is pending, later callers get the
 * same promise. Used e.g. so two environments pulling one image share one pull.
 */
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  /** Runs `work` for `key` unless a run for `key` is already in flight, whose promise is returned. */
  do(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.inFlight.get(key);
    if (existing) return existing;
    const promise = work().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }
}
