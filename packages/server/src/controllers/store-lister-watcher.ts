// The server's source for the controller kit's informers: list and watch one kind straight from the ResourceStore.
import type { Kind, ListerWatcher, ResourceByKind } from '@warren/api';
import type { ObjectFilter, ResourceStore } from '../storage/index.js';

/**
 * A {@link ListerWatcher} over `store` for `kind` (optionally filtered). The store's watch throws `GoneError`
 * (410) when the resourceVersion is older than its kept history, which makes the informer list again.
 * `store.list` takes no signal: a list in flight when the informer stops is simply awaited.
 */
export function storeListerWatcher<K extends Kind>(store: ResourceStore, kind: K, filter?: ObjectFilter): ListerWatcher<ResourceByKind[K]> {
  return {
    list: () => store.list(kind, filter),
    watch: (resourceVersion, signal) => store.watch(kind, { fromResourceVersion: resourceVersion, signal, ...(filter ? { filter } : {}) }),
  };
}
