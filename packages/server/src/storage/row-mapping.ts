// Row mapping of the SQL store: `objects` and `events` rows to resources and event records, and back.
import { API_VERSION, type Kind, type Resource } from '@warren/api';
import type { Insertable, Selectable } from 'kysely';
import type { EventsTable, ObjectsTable } from './database.js';
import type { EventRecord } from './event-hub.js';

/** @returns the resource an `objects` row holds (timestamps as RFC 3339, resourceVersion as a decimal string). */
export function rowToResource(row: Selectable<ObjectsTable>): Resource {
  const metadata: Resource['metadata'] = {
    id: row.id,
    name: row.name,
    generation: row.generation,
    resourceVersion: String(row.resource_version),
    createdTime: new Date(row.created_time).toISOString(),
    labels: row.labels as Record<string, string>,
    ownerId: row.owner_id,
  };
  if (row.deletion_time) metadata.deletionTime = new Date(row.deletion_time).toISOString();
  return { kind: row.kind, apiVersion: API_VERSION, metadata, spec: row.spec, status: row.status } as Resource;
}

/** @returns the watch event an `events` row holds. */
export function rowToRecord(row: Selectable<EventsTable>): EventRecord {
  return {
    resourceVersion: Number(row.resource_version),
    kind: row.kind as Kind,
    type: row.type as EventRecord['type'],
    object: row.object as Resource,
    previousRunnerId: row.previous_runner_id ?? undefined,
    previousLabels: (row.previous_labels as Record<string, string> | null) ?? undefined,
  };
}

/**
 * @returns the `objects` row that stores `resource`. `secret_hash` is left out: `setTokenSecretHash` owns it,
 * and a group commit's upsert must neither insert nor overwrite it.
 */
export function resourceToRow(resource: Resource): Insertable<ObjectsTable> {
  return {
    kind: resource.kind,
    id: resource.metadata.id,
    name: resource.metadata.name,
    name_scope: nameScopeOf(resource),
    owner_id: resource.metadata.ownerId,
    generation: resource.metadata.generation,
    resource_version: Number(resource.metadata.resourceVersion),
    created_time: resource.metadata.createdTime,
    deletion_time: resource.metadata.deletionTime ?? null,
    labels: JSON.stringify(resource.metadata.labels),
    spec: JSON.stringify(resource.spec),
    status: JSON.stringify(resource.status),
  };
}

/** @returns the `events` row that records `record`. */
export function recordToRow(record: EventRecord): Insertable<EventsTable> {
  return {
    resource_version: record.resourceVersion,
    kind: record.kind,
    object_id: record.object.metadata.id,
    type: record.type,
    object: JSON.stringify(record.object),
    owner_id: record.object.metadata.ownerId,
    runner_id: runnerIdOf(record.object) ?? null,
    previous_runner_id: record.previousRunnerId ?? null,
    previous_labels: record.previousLabels === undefined ? null : JSON.stringify(record.previousLabels),
  };
}

/** The uniqueness scope of a name: the owner for Environments (unique per owner), '' for other kinds. */
export function nameScopeOf(resource: Resource): string {
  return resource.kind === 'Environment' ? resource.metadata.ownerId : '';
}

/** @returns `status.runnerId` of `object` when it is a string (Environments), else undefined. */
export function runnerIdOf(object: Resource): string | undefined {
  const runnerId = (object.status as { runnerId?: unknown }).runnerId;
  return typeof runnerId === 'string' ? runnerId : undefined;
}
