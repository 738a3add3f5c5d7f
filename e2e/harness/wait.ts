// Polling helpers of the integration harness: a condition, an environment's phase, an environment's deletion.
import { ApiError, type Environment, type EnvironmentPhase, type WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';

/** Bounds of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this long (default 60 000 ms). */
  timeoutMs?: number;
  /** Pause between probes (default 100 ms). */
  intervalMs?: number;
}

/**
 * Calls `probe` until it returns something other than `undefined`. A probe that throws counts as "not yet"; its
 * last error is quoted if the wait times out.
 * @returns the probe's first defined value.
 * @throws {Error} `timed out waiting for <what>` after `timeoutMs`.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, options: WaitOptions = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) break;
    await sleep(options.intervalMs ?? 100);
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

/**
 * Waits until the environment `id` (as `client` sees it) reaches `phase`.
 * @returns the environment in that phase.
 * @throws {Error} with the last status when it turns `Failed` first (unless `Failed` is awaited) or after
 * `timeoutMs` (default 120 000 ms: a first image pull and clone on a busy host).
 */
export async function waitForPhase(client: WarrenClient, id: string, phase: EnvironmentPhase, timeoutMs = 120_000): Promise<Environment> {
  const deadline = Date.now() + timeoutMs;
  let last: Environment | undefined;
  for (;;) {
    last = await client.get('Environment', id);
    if (last.status.phase === phase) return last;
    if (last.status.phase === 'Failed' || Date.now() >= deadline) break;
    await sleep(100);
  }
  throw new Error(`environment ${id} did not reach ${phase}: ${JSON.stringify(last.status)}`);
}

/**
 * Deletes the environment `id` (if it still exists) and waits until the server has collected it, i.e. its runner
 * removed it from the host (finalizer) and a GET answers 404.
 * @throws {Error} after `timeoutMs` (default 60 000 ms).
 */
export async function deleteEnvironment(client: WarrenClient, id: string, timeoutMs = 60_000): Promise<void> {
  await client.delete('Environment', id).catch((error: unknown) => {
    if (!(error instanceof ApiError && error.code === 404)) throw error;
  });
  await waitFor(
    `environment ${id} to be deleted`,
    () =>
      client.get('Environment', id).then(
        () => undefined,
        (error: unknown) => {
          if (error instanceof ApiError && error.code === 404) return true;
          throw error;
        },
      ),
    { timeoutMs },
  );
}
