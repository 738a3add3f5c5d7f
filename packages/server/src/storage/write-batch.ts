// One group-commit batch applied in memory: the writes' rules (names, resourceVersion checks, generation,
// no-op updates) and the objects and events the batch leaves behind.
import { API_VERSION, type Kind, type Resource, type ResourceByKind } from '@warren/api';
import { ConflictError, NotFoundError } from '@warren/base';
import type { EventRecord } from './event-hub.js';
import { nameScopeOf, runnerIdOf } from './row-mapping.js';
import type { Mutation, NewObject, UpdateOptions } from './store.js';

/** A write as queued for the group committer. `nameScope`: see {@link nameScopeOf}. */
export type WriteOperation =
  | { type: 'create'; kind: Kind; id: string; nameScope: string; object: NewObject<Kind> }
  | { type: 'update'; kind: Kind; id: string; mutation: Mutation<Kind>; options: UpdateOptions | undefined }
  | { type: 'delete'; kind: Kind; id: string; options: UpdateOptions | undefined };

/**
 * The objects one batch touches, as they are after each of its jobs so far, and the events the jobs made.
 * Jobs apply in queue order and see the effects of earlier jobs of the same batch; a job that throws changes
 * nothing and takes no resourceVersion, so the history stays gap-free.
 */
export class BatchState {
  /** id → object after the jobs so far; `null` = absent (deleted in this batch). Ids not here do not exist. */
  private readonly objects = new Map<string, Resource | null>();
  /** name key (kind, scope, name) → id, or `null` when the name was freed in this batch. */
  private readonly names = new Map<string, string | null>();
  /** Ids that exist in the database (before the batch). */
  private readonly stored = new Set<string>();
  /** Ids written by a job of this batch. */
  private readonly touched = new Set<string>();
  /** The events of the batch's jobs so far, in resourceVersion order (consecutive from `head + 1`). */
  readonly records: EventRecord[] = [];

  /** The resourceVersion of the batch's last event so far (the head it started from before any). */
  private nextHead: number;

  /** @param now the clock for `createdTime`. */
  constructor(
    /** The head resourceVersion the batch started from. */
    readonly head: number,
    private readonly now: () => Date,
  ) {
    this.nextHead = head;
  }

  /** Adds an object read from the database. */
  load(resource: Resource): void {
    this.objects.set(resource.metadata.id, resource);
    this.names.set(nameKey(resource.kind, nameScopeOf(resource), resource.metadata.name), resource.metadata.id);
    this.stored.add(resource.metadata.id);
  }

  /** Applies one write. @returns the stored object. @throws ConflictError, NotFoundError or the mutation's error. */
  apply(operation: WriteOperation): Resource {
    switch (operation.type) {
      case 'create':
        return this.create(operation.kind, operation.id, operation.nameScope, operation.object);
      case 'update':
        return this.update(operation.kind, operation.id, operation.mutation, operation.options);
      case 'delete':
        return this.delete(operation.kind, operation.id, operation.options);
    }
  }

  /** True when a job of the batch deleted an object that exists in the database. */
  hasDeletes(): boolean {
    return this.changes().deletes.length > 0;
  }

  /** The final state of every object a job changed: rows to insert or update, ids to delete. */
  changes(): { upserts: Resource[]; deletes: string[] } {
    const upserts: Resource[] = [];
    const deletes: string[] = [];
    for (const id of this.touched) {
      const resource = this.objects.get(id);
      if (resource) upserts.push(resource);
      else if (this.stored.has(id)) deletes.push(id);
    }
    return { upserts, deletes };
  }

  private create(kind: Kind, id: string, nameScope: string, object: NewObject<Kind>): Resource {
    const key = nameKey(kind, nameScope, object.name);
    // An id is unique across kinds (the primary key); a name per kind and scope.
    if (this.objects.get(id) || this.names.get(key)) throw alreadyExists(kind, object.name);
    const resourceVersion = ++this.nextHead;
    const resource = normalize({
      kind,
      apiVersion: API_VERSION,
      metadata: {
        id,
        name: object.name,
        generation: 1,
        resourceVersion: String(resourceVersion),
        createdTime: this.now().toISOString(),
        labels: object.labels ?? {},
        ownerId: object.ownerId,
      },
      spec: object.spec,
      status: object.status,
    }) as Resource;
    this.put(resource);
    this.records.push({ resourceVersion, kind, type: 'ADDED', object: resource });
    return resource;
  }

  private update(kind: Kind, id: string, mutation: Mutation<Kind>, options: UpdateOptions | undefined): Resource {
    const current = this.current(kind, id);
    checkResourceVersion(kind, id, current, options);
    const proposed = mutation(structuredClone<ResourceByKind[Kind]>(current));
    if (proposed === undefined) return current;
    const next = normalize({
      labels: proposed.metadata.labels ?? {},
      deletionTime: proposed.metadata.deletionTime,
      spec: proposed.spec,
      status: proposed.status,
    }) as { labels: Record<string, string>; deletionTime?: string; spec: unknown; status: unknown };
    const specChanged = !jsonEqual(current.spec, next.spec);
    const changed =
      specChanged ||
      !jsonEqual(current.status, next.status) ||
      !jsonEqual(current.metadata.labels, next.labels) ||
      current.metadata.deletionTime !== next.deletionTime;
    // A write that changes nothing is not a write: no new resourceVersion, no event (as in Kubernetes).
    if (!changed) return current;
    const resourceVersion = ++this.nextHead;
    const generation = current.metadata.generation + (specChanged ? 1 : 0);
    const metadata = { ...current.metadata, labels: next.labels, generation, resourceVersion: String(resourceVersion) };
    if (next.deletionTime === undefined) delete metadata.deletionTime;
    else metadata.deletionTime = next.deletionTime;
    const resource = { ...current, metadata, spec: next.spec, status: next.status } as Resource;
    this.put(resource);
    this.records.push({
      resourceVersion,
      kind,
      type: 'MODIFIED',
      object: resource,
      previousRunnerId: runnerIdOf(current),
      previousLabels: current.metadata.labels,
    });
    return resource;
  }

  private delete(kind: Kind, id: string, options: UpdateOptions | undefined): Resource {
    const current = this.current(kind, id);
    checkResourceVersion(kind, id, current, options);
    const resourceVersion = ++this.nextHead;
    const resource = { ...current, metadata: { ...current.metadata, resourceVersion: String(resourceVersion) } } as Resource;
    this.objects.set(id, null);
    this.names.set(nameKey(kind, nameScopeOf(current), current.metadata.name), null);
    this.touched.add(id);
    this.records.push({ resourceVersion, kind, type: 'DELETED', object: resource });
    return resource;
  }

  /** @throws {NotFoundError} unless an object of `kind` with `id` exists at this point of the batch. */
  private current(kind: Kind, id: string): Resource {
    const current = this.objects.get(id);
    if (!current || current.kind !== kind) throw new NotFoundError(kind, id);
    return current;
  }

  private put(resource: Resource): void {
    this.objects.set(resource.metadata.id, resource);
    this.names.set(nameKey(resource.kind, nameScopeOf(resource), resource.metadata.name), resource.metadata.id);
    this.touched.add(resource.metadata.id);
  }
}

/**
 * The error of a create whose name is taken: 409 ConflictError, reason `AlreadyExists`.
 * @param cause the driver's error when the database found the duplicate (a unique violation).
 */
export function alreadyExists(kind: Kind, name: string, cause?: unknown): ConflictError {
  const error = new ConflictError(`${kind} "${name}" already exists`, 'AlreadyExists', [
    { field: 'metadata.name', message: 'already exists' },
  ]);
  if (cause !== undefined) Object.defineProperty(error, 'cause', { value: cause });
  return error;
}

function nameKey(kind: string, scope: string, name: string): string {
  return `${kind}\u0000${scope}\u0000${name}`;
}

function checkResourceVersion(kind: Kind, id: string, current: Resource, options: UpdateOptions | undefined): void {
  const expected = options?.expectedResourceVersion;
  if (expected !== undefined && expected !== current.metadata.resourceVersion) {
    throw new ConflictError(
      `${kind} "${id}" was modified (resourceVersion ${current.metadata.resourceVersion}, expected ${expected}); get it again and retry`,
      'Conflict',
      [{ field: 'metadata.resourceVersion', message: 'does not match the stored resourceVersion' }],
    );
  }
}

/** Drops `undefined` members the way JSON storage does, so what we return equals what a later get returns. */
function normalize(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** Deep equality of JSON values, ignoring object key order (jsonb does not keep it). */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((item, index) => jsonEqual(item, b[index]));
  const aRecord = a as Record<string, unknown>;
  const bRecord = b as Record<string, unknown>;
  const aKeys = Object.keys(aRecord);
  if (aKeys.length !== Object.keys(bRecord).length) return false;
  return aKeys.every((key) => Object.hasOwn(bRecord, key) && jsonEqual(aRecord[key], bRecord[key]));
}
