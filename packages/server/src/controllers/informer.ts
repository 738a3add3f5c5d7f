// A list+watch cache of one kind (Kubernetes' informer, reduced): controllers read from memory and
// are told about every change; a relist repairs anything a broken watch may have missed.
import type { Kind, ResourceByKind } from '@warren/api';
import { backoffMs, errorMessage, isAbortError, sleep, type Logger } from '@warren/base';
import type { ResourceStore } from '../storage/store.js';

/** Called for every change the cache sees; `object` is the new state, or the last state for a removal. */
export type ChangeListener<K extends Kind> = (object: ResourceByKind[K], removed: boolean) => void;

/**
 * Keeps every object of `kind` in memory, fed by `store.list` and then `store.watch` from the list's
 * resourceVersion. On a watch error (410 Gone included) or {@link relist}, it lists again and emits the
 * differences, so listeners converge even if events were lost.
 */
export class Informer<K extends Kind> {
  private readonly objects = new Map<string, ResourceByKind[K]>();
  private relistController = new AbortController();
  private synced: Promise<void>;
  private resolveSynced!: () => void;

  constructor(
    private readonly store: ResourceStore,
    readonly kind: K,
    private readonly listener: ChangeListener<K>,
    private readonly logger: Logger,
  ) {
    this.synced = new Promise((resolve) => (this.resolveSynced = resolve));
  }

  /** Resolves once the first list has been loaded. */
  whenSynced(): Promise<void> {
    return this.synced;
  }

  /** The cached object with `id`. Read-only. */
  get(id: string): ResourceByKind[K] | undefined {
    return this.objects.get(id);
  }

  /** Every cached object. Read-only. */
  list(): ResourceByKind[K][] {
    return [...this.objects.values()];
  }

  /**
   * Records the result of this process's own write before its watch event arrives, so the next reconcile
   * sees it (e.g. the scheduler counts an environment it just placed). Ignored when older than the cache.
   */
  apply(object: ResourceByKind[K]): void {
    this.put(object);
  }

  /** Records this process's own delete (see {@link apply}). */
  forget(object: ResourceByKind[K]): void {
    this.remove(object);
  }

  /** Lists again now and restarts the watch. */
  relist(): void {
    this.relistController.abort();
  }

  /** Lists and watches until `signal` aborts. Never throws (errors are logged and retried). */
  async run(signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (!signal.aborted) {
      this.relistController = new AbortController();
      const watchSignal = AbortSignal.any([signal, this.relistController.signal]);
      try {
        const listed = await this.store.list(this.kind);
        this.replaceAll(listed.items);
        this.resolveSynced();
        attempt = 0;
        for await (const event of this.store.watch(this.kind, { fromResourceVersion: listed.resourceVersion, signal: watchSignal })) {
          if (event.type === 'DELETED') this.remove(event.object);
          else if (event.type !== 'BOOKMARK') this.put(event.object);
        }
      } catch (error) {
        if (signal.aborted) return;
        if (!(this.relistController.signal.aborted && isAbortError(error))) {
          this.logger.warn({ kind: this.kind, error: errorMessage(error) }, 'watch failed; listing again');
          await sleep(backoffMs(attempt++, 100, 5_000), signal).catch(() => {});
        }
      }
    }
  }

  private replaceAll(items: ResourceByKind[K][]): void {
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(item.metadata.id);
      const cached = this.objects.get(item.metadata.id);
      if (!cached || cached.metadata.resourceVersion !== item.metadata.resourceVersion) {
        this.objects.set(item.metadata.id, item);
        this.listener(item, false);
      }
    }
    for (const [id, cached] of this.objects) {
      if (!seen.has(id)) {
        this.objects.delete(id);
        this.listener(cached, true);
      }
    }
  }

  private put(object: ResourceByKind[K]): void {
    const cached = this.objects.get(object.metadata.id);
    if (cached && Number(cached.metadata.resourceVersion) >= Number(object.metadata.resourceVersion)) return;
    this.objects.set(object.metadata.id, object);
    this.listener(object, false);
  }

  private remove(object: ResourceByKind[K]): void {
    const cached = this.objects.get(object.metadata.id);
    if (!cached || Number(cached.metadata.resourceVersion) > Number(object.metadata.resourceVersion)) return;
    this.objects.delete(object.metadata.id);
    this.listener(object, true);
  }
}
