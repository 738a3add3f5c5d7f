// Event predicates of the controller kit: which informer events reach a controller's queue
// (controller-runtime's predicate package, reduced).
import type { EventPredicate, InformerEvent, InformerObject } from './informer.js';

/**
 * Passes an `Updated` event only when `project` of the old and the new object differ (compared as JSON);
 * every other event (`Added`, `Deleted`, `Resync`) passes. `project` picks the fields a controller acts on,
 * so a change elsewhere (a status field another component owns, a timestamp) does not wake it.
 */
export function changedPredicate<T>(project: (object: T) => unknown): EventPredicate<T> {
  return (event: InformerEvent<T>) =>
    event.type !== 'Updated' || JSON.stringify(project(event.old)) !== JSON.stringify(project(event.object));
}

/**
 * Passes an `Updated` event only when `metadata.generation` changed, i.e. the spec changed (controller-runtime's
 * `GenerationChangedPredicate`); every other event passes, `Resync` included.
 */
export function generationChangedPredicate<T extends InformerObject & { metadata: { generation: number } }>(): EventPredicate<T> {
  return changedPredicate((object: T) => object.metadata.generation);
}
