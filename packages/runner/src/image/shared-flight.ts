// Deduplicates concurrent work by key with per-caller cancellation. Unlike @warren/base's SingleFlight,
// whose shared promise is bound to the first caller's AbortSignal, a caller that aborts here only
// stops waiting; the shared work is aborted when every caller has aborted.

/**
 * Runs one `work` per key at a time; later callers for the same key join it.
 * `work` receives a signal that fires only when all joined callers' signals have fired.
 */
export class SharedFlight<T> {
  private readonly flights = new Map<string, { promise: Promise<T>; controller: AbortController; waiters: number }>();

  /**
   * Joins or starts the work for `key`.
   * @returns the work's result.
   * @throws whatever the work throws, or `signal.reason` when this caller's `signal` aborts first.
   */
  run(key: string, signal: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    let flight = this.flights.get(key);
    if (!flight) {
      const controller = new AbortController();
      const created = { controller, waiters: 0, promise: Promise.resolve() as unknown as Promise<T> };
      created.promise = Promise.resolve()
        .then(() => work(controller.signal))
        .finally(() => {
          if (this.flights.get(key) === created) this.flights.delete(key);
        });
      this.flights.set(key, created);
      flight = created;
    }
    const joined = flight;
    joined.waiters++;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        joined.waiters--;
        if (joined.waiters === 0) {
          if (this.flights.get(key) === joined) this.flights.delete(key);
          joined.controller.abort(signal?.reason);
        }
        reject(signal?.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      joined.promise.then(
        (value) => {
          if (settled) return;
          settled = true;
          joined.waiters--;
          signal?.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (error: Error) => {
          if (settled) return;
          settled = true;
          joined.waiters--;
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  /** True while work for `key` is in flight. */
  has(key: string): boolean {
    return this.flights.has(key);
  }
}
