// An informer: a list+watch cache of one kind of object (client-go's SharedInformer, reduced). Controllers
// read from memory and are told about every change that passes their predicates; a relist repairs anything
// a broken watch may have missed, and a periodic resync hands every cached object out again.
import { type Logger, WarrenError, backoffMs, errorMessage, silentLogger } from '@warren/base';
import type { WatchEvent } from '../resources.js';
import { delay, realTimeSource, type TimerHandle, type TimeSource } from './clock.js';

/** What the informer needs of an object: its id (the cache and queue key) and its resourceVersion. */
export interface InformerObject {
  metadata: { id: string; resourceVersion: string };
}

/** The result of {@link ListerWatcher.list}: every object, and the resourceVersion to watch from. */
export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/**
 * Where an informer's objects come from (client-go's ListerWatcher): the server's store, or the HTTP API.
 * `watch` streams the changes after `resourceVersion` until `signal` aborts, and throws an error with
 * `code` 410 (reason `Gone`) when that version is older than the history kept, which makes the informer list
 * again. Both reject with an abort error when `signal` aborts.
 */
export interface ListerWatcher<T extends InformerObject> {
  list(signal: AbortSignal): Promise<ListResult<T>>;
  watch(resourceVersion: string, signal: AbortSignal): AsyncIterable<WatchEvent<T>>;
}

/**
 * A change the cache saw. `Updated` carries the previous cached object as `old`. `Deleted` carries the last
 * known state. `Resync` is the periodic re-delivery of an unchanged cached object.
 */
export type InformerEvent<T> =
  { type: 'Added'; object: T } | { type: 'Updated'; object: T; old: T } | { type: 'Deleted'; object: T } | { type: 'Resync'; object: T };

/** Receives the events of an informer; called synchronously, in order, after the cache changed. */
export type InformerEventHandler<T> = (event: InformerEvent<T>) => void;

/** Decides whether an event reaches a handler (controller-runtime's predicates); see predicates.ts. */
export type EventPredicate<T> = (event: InformerEvent<T>) => boolean;

/** Options of {@link Informer}. */
export interface InformerOptions<T extends InformerObject> {
  listerWatcher: ListerWatcher<T>;
  /** What the informer holds, for logs (e.g. the kind). */
  name: string;
  logger?: Logger;
  /** Milliseconds between re-deliveries of every cached object as `Resync` events; absent: never. */
  resyncIntervalMs?: number;
  /** Milliseconds between full relists (the watch is restarted); absent: only after an expired watch (410). */
  relistIntervalMs?: number;
  /** Timers of the resync, relist and retry delays (default the platform's). */
  time?: TimeSource;
  /**
   * Called after every list, with the listed objects (the cache's content then), before the watch starts and,
   * the first time, before {@link Informer.whenSynced} resolves; no watch event is handed out while it runs. For work
   * that needs a snapshot with nothing newer arriving meanwhile (the runner removes host state of
   * environments that were not listed). A throw is logged and the informer goes on.
   */
  onListed?: (items: T[], signal: AbortSignal) => Promise<void>;
}

/**
 * Keeps every object of one kind in memory: `list`, then `watch` from the list's resourceVersion. After a
 * watch error or the end of the stream it watches again from the last resourceVersion seen (retrying with
 * backoff); when that version has expired (410 Gone) or on {@link relist} it lists again and hands out the
 * differences, so handlers converge even if events were lost. Objects only replace cached ones with a higher
 * resourceVersion, so a late event never undoes a newer state.
 */
export class Informer<T extends InformerObject> {
  private readonly objects = new Map<string, T>();
  private readonly handlers = new Set<InformerEventHandler<T>>();
  private readonly logger: Logger;
  private readonly time: TimeSource;
  private relistController: AbortController | undefined;
  private relistRequested = false;
  private synced = false;
  private readonly syncedPromise: Promise<void>;
  private resolveSynced!: () => void;

  constructor(private readonly options: InformerOptions<T>) {
    this.logger = options.logger ?? silentLogger;
    this.time = options.time ?? realTimeSource;
    this.syncedPromise = new Promise((resolve) => (this.resolveSynced = resolve));
  }

  /**
   * Calls `handler` for every event that passes all `predicates` (none: every event). Objects already cached
   * are not replayed. @returns a function that removes the handler.
   */
  subscribe(handler: InformerEventHandler<T>, ...predicates: EventPredicate<T>[]): () => void {
    const filtered: InformerEventHandler<T> =
      predicates.length === 0 ? handler : (event) => predicates.every((passes) => passes(event)) && handler(event);
    this.handlers.add(filtered);
    return () => this.handlers.delete(filtered);
  }

  /** Resolves once the first list has been loaded (and its events handed out). */
  whenSynced(): Promise<void> {
    return this.syncedPromise;
  }

  /** True once the first list has been loaded. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** The cached object with `id`. Read-only. */
  get(id: string): T | undefined {
    return this.objects.get(id);
  }

  /** Every cached object, in the order they were first seen. Read-only. */
  list(): T[] {
    return [...this.objects.values()];
  }

  /**
   * Records the result of this process's own write before its watch event arrives, so the next reconcile
   * sees it (e.g. the scheduler counts an environment it just placed). Handed out like a watch event;
   * ignored when not newer than the cache (the watch was faster).
   */
  apply(object: T): void {
    this.put(object);
  }

  /** Records this process's own delete (see {@link apply}); handed out as `Deleted`. */
  applyDeleted(object: T): void {
    this.remove(object);
  }

  /** Lists again now and restarts the watch from the new list. */
  relist(): void {
    this.relistRequested = true;
    this.relistController?.abort();
  }

  /** Hands every cached object out again as a `Resync` event (what the resync timer does). */
  resync(): void {
    for (const object of this.list()) this.emit({ type: 'Resync', object });
  }

  /** Lists and watches until `signal` aborts. Never throws: errors are logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    const stopTimers = [
      this.every(this.options.resyncIntervalMs, () => this.resync()),
      this.every(this.options.relistIntervalMs, () => this.relist()),
    ];
    try {
      await this.listAndWatch(signal);
    } finally {
      for (const stop of stopTimers) stop();
    }
  }

  private async listAndWatch(signal: AbortSignal): Promise<void> {
    const { listerWatcher, name } = this.options;
    let resourceVersion: string | undefined;
    let attempt = 0;
    while (!signal.aborted) {
      if (this.relistRequested) {
        this.relistRequested = false;
        resourceVersion = undefined;
      }
      const relist = new AbortController();
      this.relistController = relist;
      const watchSignal = AbortSignal.any([signal, relist.signal]);
      try {
        if (resourceVersion === undefined) {
          const listed = await listerWatcher.list(watchSignal);
          this.replaceAll(listed.items);
          await this.afterList(listed.items, watchSignal);
          resourceVersion = listed.resourceVersion;
          attempt = 0;
          if (!this.synced) {
            this.synced = true;
            this.resolveSynced();
          }
        }
        for await (const event of listerWatcher.watch(resourceVersion, watchSignal)) {
          attempt = 0;
          resourceVersion = event.object.metadata.resourceVersion;
          if (event.type === 'DELETED') this.remove(event.object);
          else if (event.type !== 'BOOKMARK') this.put(event.object);
        }
        // The stream ended (e.g. the server shut down): watch again after a short pause.
        await delay(this.time, backoffMs(attempt++, 100, 2_000), watchSignal);
      } catch (error) {
        if (signal.aborted) return;
        if (relist.signal.aborted) continue;
        if (error instanceof WarrenError && error.code === 410) {
          this.logger.info({ informer: name, resourceVersion }, 'watch history expired; listing again');
          resourceVersion = undefined;
          continue;
        }
        const retryInMs = backoffMs(attempt++, 200, 5_000);
        this.logger.warn({ informer: name, error: errorMessage(error), retryInMs }, 'watch failed; watching again');
        await delay(this.time, retryInMs, watchSignal).catch(() => {});
      }
    }
  }

  private async afterList(items: T[], signal: AbortSignal): Promise<void> {
    if (!this.options.onListed) return;
    try {
      await this.options.onListed(items, signal);
    } catch (error) {
      if (signal.aborted) throw error;
      this.logger.warn({ informer: this.options.name, error: errorMessage(error) }, 'onListed failed');
    }
  }

  /** Calls `action` every `intervalMs` until the returned function is called; nothing when `intervalMs` is absent. */
  private every(intervalMs: number | undefined, action: () => void): () => void {
    if (intervalMs === undefined || intervalMs <= 0) return () => {};
    let stopped = false;
    let handle: TimerHandle;
    const schedule = () => {
      handle = this.time.setTimeout(() => {
        if (stopped) return;
        action();
        schedule();
      }, intervalMs);
    };
    schedule();
    return () => {
      stopped = true;
      this.time.clearTimeout(handle);
    };
  }

  private replaceAll(items: T[]): void {
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(item.metadata.id);
      this.put(item);
    }
    for (const [id, cached] of this.objects) {
      if (!seen.has(id)) {
        this.objects.delete(id);
        this.emit({ type: 'Deleted', object: cached });
      }
    }
  }

  private put(object: T): void {
    const cached = this.objects.get(object.metadata.id);
    if (cached && Number(cached.metadata.resourceVersion) >= Number(object.metadata.resourceVersion)) return;
    this.objects.set(object.metadata.id, object);
    this.emit(cached ? { type: 'Updated', object, old: cached } : { type: 'Added', object });
  }

  private remove(object: T): void {
    const cached = this.objects.get(object.metadata.id);
    if (!cached || Number(cached.metadata.resourceVersion) > Number(object.metadata.resourceVersion)) return;
    this.objects.delete(object.metadata.id);
    this.emit({ type: 'Deleted', object });
  }

  private emit(event: InformerEvent<T>): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (error) {
        this.logger.error({ informer: this.options.name, error: errorMessage(error) }, 'informer event handler failed');
      }
    }
  }
}
