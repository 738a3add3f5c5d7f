// In-process fan-out of committed watch events to the watchers of this server process, in
// resourceVersion order, fed by this process's own commits and by notifications of other processes' commits.
import type { Kind, Resource } from '@warren/api';
import type { Logger } from '@warren/base';
import { errorMessage, WarrenError } from '@warren/base';
import { GoneError } from './errors.js';

/** One committed write as recorded in the `events` table. `resourceVersion` is gap-free across all kinds. */
export interface EventRecord {
  resourceVersion: number;
  kind: Kind;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  /** The object after the write (for DELETED: the last state, carrying the delete's resourceVersion). Read-only. */
  object: Resource;
  /** MODIFIED only: `status.runnerId` before the write. */
  previousRunnerId?: string | undefined;
  /** MODIFIED only: `metadata.labels` before the write. */
  previousLabels?: Record<string, string> | undefined;
}

/** A consumer of the hub (one per watch). `push` must not block; `fail` ends the watch with an error. */
export interface HubSubscriber {
  push(record: EventRecord): void;
  fail(error: Error): void;
}

/** Reads committed events with resourceVersion > `after`, ascending, at most `limit`. */
export type EventFetcher = (after: number, limit: number) => Promise<EventRecord[]>;

const FETCH_PAGE = 1000;
const RETRY_MS = 500;

/**
 * Delivers each committed event exactly once, in resourceVersion order, to every subscriber.
 *
 * Why this is enough to never lose or reorder an event: writers serialize on one advisory lock and take
 * resourceVersion = previous + 1 under it, so the history is gap-free and commit order equals
 * resourceVersion order. Hence an event N can be dispatched as soon as N - 1 was; a record that arrives
 * early (local commits can resolve out of order across pool connections) or a notification about a write
 * of another process makes the hub read the missing range from the `events` table, where every event
 * below a committed one is already committed.
 */
export class EventHub {
  private lastDispatched: number;
  private readonly pending = new Map<number, EventRecord>();
  private readonly subscribers = new Set<HubSubscriber>();
  private fetching = false;
  private fetchAgain = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /** @param lastResourceVersion the newest committed resourceVersion when the hub starts. */
  constructor(
    private readonly fetcher: EventFetcher,
    lastResourceVersion: number,
    private readonly logger: Logger,
  ) {
    this.lastDispatched = lastResourceVersion;
  }

  /** The newest resourceVersion dispatched so far. */
  get resourceVersion(): number {
    return this.lastDispatched;
  }

  /** Adds a subscriber; @returns the function that removes it. */
  subscribe(subscriber: HubSubscriber): () => void {
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }

  /** A write of this process committed: dispatch it now when it is next in line, else fetch what is missing. */
  publish(record: EventRecord): void {
    if (this.closed || record.resourceVersion <= this.lastDispatched) return;
    if (record.resourceVersion === this.lastDispatched + 1) {
      this.dispatch(record);
      this.drainPending();
    } else {
      this.pending.set(record.resourceVersion, record);
      this.requestFetch();
    }
  }

  /** Some process committed `resourceVersion` (LISTEN/NOTIFY): fetch what this process has not seen. */
  notify(resourceVersion: number): void {
    if (!this.closed && resourceVersion > this.lastDispatched) this.requestFetch();
  }

  /** Reads and dispatches every committed event newer than the last dispatched one (coalesced). */
  requestFetch(): void {
    if (this.closed) return;
    if (this.fetching) {
      this.fetchAgain = true;
      return;
    }
    this.fetching = true;
    void this.fetchLoop();
  }

  /** Stops the hub and ends every subscriber with `error`. */
  close(error: Error = new WarrenError('ServiceUnavailable', 503, 'the store is closing')): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    for (const subscriber of this.subscribers) subscriber.fail(error);
    this.subscribers.clear();
    this.pending.clear();
  }

  private async fetchLoop(): Promise<void> {
    try {
      do {
        this.fetchAgain = false;
        const records = await this.fetcher(this.lastDispatched, FETCH_PAGE);
        if (this.closed) return;
        for (const record of records) {
          if (record.resourceVersion <= this.lastDispatched) continue;
          if (record.resourceVersion !== this.lastDispatched + 1) {
            // History was pruned past us (only possible after a very long stall): watchers must relist.
            this.failAll(new GoneError(`watch events ${this.lastDispatched + 1}..${record.resourceVersion - 1} are no longer available`));
          }
          this.dispatch(record);
        }
        for (const key of this.pending.keys()) if (key <= this.lastDispatched) this.pending.delete(key);
        this.drainPending();
        if (records.length === FETCH_PAGE) this.fetchAgain = true;
      } while (this.fetchAgain && !this.closed);
      this.fetching = false;
    } catch (error) {
      this.fetching = false;
      if (this.closed) return;
      this.logger.warn({ error: errorMessage(error) }, 'reading watch events failed; retrying');
      this.retryTimer = setTimeout(() => this.requestFetch(), RETRY_MS);
      this.retryTimer.unref();
    }
  }

  private drainPending(): void {
    for (let next = this.pending.get(this.lastDispatched + 1); next; next = this.pending.get(this.lastDispatched + 1)) {
      this.pending.delete(next.resourceVersion);
      this.dispatch(next);
    }
  }

  private dispatch(record: EventRecord): void {
    this.lastDispatched = record.resourceVersion;
    for (const subscriber of this.subscribers) subscriber.push(record);
  }

  private failAll(error: Error): void {
    for (const subscriber of this.subscribers) subscriber.fail(error);
    this.subscribers.clear();
  }
}
