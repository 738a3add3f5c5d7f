// Watches of the SQL store: list or history first, then live events from the hub through a bounded
// per-watcher queue, filtered with Kubernetes selector semantics.
import type { Kind, Resource, ResourceByKind, WatchEvent } from '@warren/api';
import { InvalidError, WarrenError } from '@warren/base';
import { GoneError } from './errors.js';
import type { EventHub, EventRecord, HubSubscriber } from './event-hub.js';
import { runnerIdOf } from './row-mapping.js';
import type { ObjectFilter } from './store.js';

/** Events read per query when a watch replays history. */
const HISTORY_PAGE = 500;

/** What a watch needs from its store. */
export interface WatchSource {
  /** True once the store is closed: a watch that starts then fails with 503 ServiceUnavailable. */
  isClosed(): boolean;
  /** The store's hub, delivering committed events in resourceVersion order. */
  hub: EventHub;
  /** Events a watcher may have queued before it is ended with 410 Gone. */
  bufferSize: number;
  /** The store's `list` (items and the resourceVersion of the same snapshot). */
  list<K extends Kind>(kind: K, filter: ObjectFilter | undefined): Promise<{ items: ResourceByKind[K][]; resourceVersion: string }>;
  /** Committed events with resourceVersion > `after`, ascending, at most `limit`. */
  readEvents(after: number, limit: number): Promise<EventRecord[]>;
}

/**
 * The events of a watch: see `ResourceStore.watch` (store.ts) for the contract. Nothing runs before the first
 * `next()`.
 * @throws {WarrenError} 503 when the store is closed; {InvalidError} 400 for a `fromResourceVersion` that is not
 * a decimal number; {GoneError} 410 when it is older than the kept history or the watcher fell more than
 * `bufferSize` events behind.
 */
export async function* watchEvents<K extends Kind>(
  source: WatchSource,
  kind: K,
  options: { fromResourceVersion?: string; filter?: ObjectFilter; signal: AbortSignal },
): AsyncGenerator<WatchEvent<ResourceByKind[K]>> {
  const { signal, filter } = options;
  if (source.isClosed()) throw new WarrenError('ServiceUnavailable', 503, 'the store is closed');
  let from: number | undefined;
  if (options.fromResourceVersion !== undefined) {
    if (!/^\d+$/.test(options.fromResourceVersion)) {
      throw new InvalidError(
        'resourceVersion must be a decimal number',
        [{ field: 'resourceVersion', message: 'must be a decimal number' }],
        'BadRequest',
        400,
      );
    }
    from = Number(options.fromResourceVersion);
  }
  // Subscribe before reading the list or history: what the read misses, the queue has (duplicates are skipped by rv).
  const queue = new WatchQueue(source.bufferSize, (record) => record.kind === kind && toWatchEvent(record, filter) !== undefined);
  const unsubscribe = source.hub.subscribe(queue);
  try {
    let last: number;
    if (from === undefined) {
      const listed = await source.list(kind, filter);
      last = Number(listed.resourceVersion);
      for (const item of listed.items) {
        if (signal.aborted) return;
        yield { type: 'ADDED', object: item };
      }
    } else {
      last = from;
      for (;;) {
        const records = await source.readEvents(last, HISTORY_PAGE);
        const first = records[0];
        if (!first) break;
        // The history is gap-free, so a missing successor means it was pruned.
        if (first.resourceVersion !== last + 1) {
          throw new GoneError(`resourceVersion ${last} is too old: the oldest kept event is ${first.resourceVersion}; list again`);
        }
        for (const record of records) {
          last = record.resourceVersion;
          if (record.kind !== kind) continue;
          const event = toWatchEvent(record, filter);
          if (event) {
            if (signal.aborted) return;
            yield event as WatchEvent<ResourceByKind[K]>;
          }
        }
        if (records.length < HISTORY_PAGE) break;
      }
    }
    for (;;) {
      const record = await queue.next(signal);
      if (record === undefined) return;
      if (record.resourceVersion <= last) continue;
      last = record.resourceVersion;
      const event = toWatchEvent(record, filter);
      if (event) yield event as WatchEvent<ResourceByKind[K]>;
    }
  } finally {
    unsubscribe();
  }
}

/** A watcher's bounded queue: overflow ends the watch with 410 Gone instead of blocking writers. */
class WatchQueue implements HubSubscriber {
  private items: EventRecord[] = [];
  private head = 0;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  /** The signal whose abort wakes {@link next} (the watch's own; hooked once). */
  private hooked: AbortSignal | undefined;

  constructor(
    private readonly limit: number,
    private readonly relevant: (record: EventRecord) => boolean,
  ) {}

  push(record: EventRecord): void {
    if (this.error || !this.relevant(record)) return;
    if (this.items.length - this.head >= this.limit) {
      this.fail(new GoneError(`the watcher fell more than ${this.limit} events behind; list again`));
      return;
    }
    this.items.push(record);
    this.signal();
  }

  fail(error: Error): void {
    this.error ??= error;
    this.items = [];
    this.head = 0;
    this.signal();
  }

  /** @returns the next record, or undefined when `signal` aborted. @throws the error the queue failed with. */
  async next(signal: AbortSignal): Promise<EventRecord | undefined> {
    for (;;) {
      if (this.error) throw this.error;
      if (signal.aborted) return undefined;
      if (this.head < this.items.length) {
        const record = this.items[this.head++]!;
        if (this.head > 1024 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        return record;
      }
      // One abort listener per watch, not an add/remove per wait: with many watchers that pair cost more than the rest
      // of a delivery (bench/control-plane profile).
      if (this.hooked !== signal) {
        this.hooked = signal;
        signal.addEventListener('abort', () => this.signal(), { once: true });
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  private signal(): void {
    this.wake?.();
  }
}

/** The fields a filter looks at, as of one moment of an object. */
interface FilterView {
  ownerId: string;
  runnerId: string | undefined;
  labels: Record<string, string>;
}

function matches(view: FilterView, filter: ObjectFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.ownerId !== undefined && view.ownerId !== filter.ownerId) return false;
  if (filter.runnerId !== undefined && view.runnerId !== filter.runnerId) return false;
  for (const [key, value] of Object.entries(filter.labels ?? {})) if (view.labels[key] !== value) return false;
  return true;
}

/**
 * The event a watcher with `filter` sees for `record`, or undefined. An object that starts matching arrives
 * as ADDED and one that stops matching as DELETED (Kubernetes "watch" semantics for selectors).
 */
function toWatchEvent(record: EventRecord, filter: ObjectFilter | undefined): WatchEvent<Resource> | undefined {
  const now: FilterView = {
    ownerId: record.object.metadata.ownerId,
    runnerId: runnerIdOf(record.object),
    labels: record.object.metadata.labels,
  };
  const matchesNow = matches(now, filter);
  if (record.type !== 'MODIFIED') return matchesNow ? { type: record.type, object: record.object } : undefined;
  const before: FilterView = { ...now, runnerId: record.previousRunnerId, labels: record.previousLabels ?? now.labels };
  const matchedBefore = matches(before, filter);
  if (matchesNow) return { type: matchedBefore ? 'MODIFIED' : 'ADDED', object: record.object };
  return matchedBefore ? { type: 'DELETED', object: record.object } : undefined;
}
