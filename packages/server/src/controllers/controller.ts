// What every control loop of the server implements, and the shared view it reads from.
import type { Environment, EnvironmentClass, Informer, Kind, Resource, Runner } from '@warren/api';
import type { Logger } from '@warren/base';
import type { ResourceStore } from '../storage/index.js';
import type { Clock } from './clock.js';

/**
 * What a controller reads (informer caches of the controller kit, fed from the store) and writes (the store).
 * A controller records its own writes in the cache with `apply` / `applyDeleted`.
 */
export interface ControllerContext {
  store: ResourceStore;
  environments: Informer<Environment>;
  runners: Informer<Runner>;
  classes: Informer<EnvironmentClass>;
  clock: Clock;
  logger: Logger;
}

/**
 * A level-triggered control loop: `reconcile(key)` compares the desired and observed state of one object
 * (read from the caches, re-checked inside the store's read-modify-write) and takes the next step. It is
 * idempotent, so it is safe to run for any key at any time and after a restart.
 * Throwing means "retry with backoff".
 */
export interface Controller {
  readonly name: string;
  /**
   * Keys reconciled at once (default 1). More than one only for a controller whose reconciles of different
   * keys do not depend on each other's results, or that accounts for its writes in flight (the scheduler).
   */
  readonly concurrency?: number;
  /** Keys to reconcile because `object` (of `kind`) changed or was removed. */
  keysFor(kind: Kind, object: Resource, removed: boolean): string[];
  /** Every key worth checking on a periodic pass (time-based rules, and repair of anything missed). */
  allKeys(): string[];
  reconcile(key: string): Promise<void>;
}
