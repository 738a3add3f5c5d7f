// Small SQL pieces the SQL store's parts share: the head resourceVersion, reading events, filters, error codes.
import { createHash } from 'node:crypto';
import { sql, type ExpressionBuilder, type Kysely } from 'kysely';
import type { Database } from './database.js';
import type { EventRecord } from './event-hub.js';
import { rowToRecord } from './row-mapping.js';
import type { ObjectFilter } from './store.js';

/** PostgreSQL unique_violation (Appendix A, "PostgreSQL Error Codes"). */
const UNIQUE_VIOLATION = '23505';

/** @returns the newest committed resourceVersion (the largest in `events`), 0 when there is none. */
export async function currentResourceVersion(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom('events')
    .select((eb) => eb.fn.max('resource_version').as('head'))
    .executeTakeFirst();
  return row?.head == null ? 0 : Number(row.head);
}

/** @returns committed events with resourceVersion > `after`, ascending, at most `limit`. */
export async function readEvents(db: Kysely<Database>, after: number, limit: number): Promise<EventRecord[]> {
  const rows = await db
    .selectFrom('events')
    .selectAll()
    .where('resource_version', '>', after)
    .orderBy('resource_version')
    .limit(limit)
    .execute();
  return rows.map(rowToRecord);
}

/** The `where` condition on `objects` for `filter` (every given field must match; labels by jsonb containment). */
export function filterExpression(eb: ExpressionBuilder<Database, 'objects'>, filter: ObjectFilter | undefined) {
  const conditions = [];
  if (filter?.ownerId !== undefined) conditions.push(eb('owner_id', '=', filter.ownerId));
  if (filter?.runnerId !== undefined) conditions.push(eb('runner_id', '=', filter.runnerId));
  if (filter?.labels && Object.keys(filter.labels).length > 0) {
    conditions.push(eb(sql.ref('labels'), '@>', sql<unknown>`cast(${JSON.stringify(filter.labels)} as jsonb)`));
  }
  return eb.and(conditions);
}

/** True when `error` is a driver error for a unique constraint violation (SQLSTATE 23505). */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === UNIQUE_VIOLATION;
}

/** A 64-bit advisory lock key (decimal string) for `name`: the first 8 bytes of its SHA-256, signed. */
export function advisoryKey(name: string): string {
  const digest = createHash('sha256').update(name).digest();
  return digest.readBigInt64BE(0).toString();
}
