// The controller kit's time source: "now" and timers, injectable so tests move time by hand.

/** An opaque timer handle returned by {@link TimeSource.setTimeout}. */
export type TimerHandle = unknown;

/**
 * Time as the work queue, the rate limiters and the informer see it.
 * `now()` is in milliseconds on a monotonic scale (only differences matter).
 */
export interface TimeSource {
  now(): number;
  /** Calls `callback` once after `delayMs` milliseconds. */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The platform's clock and timers (`performance.now()`, `setTimeout`). Timers are unref'd where the platform
 * supports it (Node), so a pending retry or resync never keeps a process alive by itself.
 */
export const realTimeSource: TimeSource = {
  now: () => performance.now(),
  setTimeout(callback, delayMs) {
    const handle = setTimeout(callback, delayMs);
    (handle as { unref?: () => void }).unref?.();
    return handle;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/**
 * Resolves after `delayMs` on `time`, or rejects with the signal's reason when `signal` aborts first.
 * (`sleep` of @warren/base on an injectable time source.)
 */
export function delay(time: TimeSource, delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = () => {
      time.clearTimeout(handle);
      reject(signal?.reason as Error);
    };
    const handle = time.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
