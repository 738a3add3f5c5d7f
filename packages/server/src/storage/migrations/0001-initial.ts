// Migration 0001: objects, watch events and settings.
import { sql, type Kysely } from 'kysely';

/**
 * Creates the three tables. `db` is already scoped to the store's schema (Kysely `withSchema`).
 * - `objects`: one row per resource; `name_scope` is the owner id for Environments (names unique per owner)
 *   and '' for every other kind (names unique per kind). `runner_id` is generated from `status.runnerId` so
 *   a runner's environments are found by index.
 * - `events`: the watch history, one row per write, keyed by resourceVersion. `previous_runner_id` and
 *   `previous_labels` record what a MODIFIED object matched before, so a filtered watch can send DELETED
 *   when an environment moves away (Kubernetes watch semantics).
 * - `settings`: key → JSON value.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('objects')
    .addColumn('kind', 'text', (column) => column.notNull())
    .addColumn('id', 'text', (column) => column.primaryKey())
    .addColumn('name', 'text', (column) => column.notNull())
    .addColumn('name_scope', 'text', (column) => column.notNull())
    .addColumn('owner_id', 'text', (column) => column.notNull())
    .addColumn('generation', 'integer', (column) => column.notNull())
    .addColumn('resource_version', 'bigint', (column) => column.notNull())
    .addColumn('created_time', 'timestamptz', (column) => column.notNull())
    .addColumn('deletion_time', 'timestamptz')
    .addColumn('labels', 'jsonb', (column) => column.notNull())
    .addColumn('spec', 'jsonb', (column) => column.notNull())
    .addColumn('status', 'jsonb', (column) => column.notNull())
    .addColumn('secret_hash', 'text')
    .addColumn('runner_id', 'text', (column) => column.generatedAlwaysAs(sql`status->>'runnerId'`).stored())
    .addUniqueConstraint('objects_kind_scope_name_key', ['kind', 'name_scope', 'name'])
    .execute();
  await db.schema.createIndex('objects_kind_created_idx').on('objects').columns(['kind', 'created_time', 'id']).execute();
  await db.schema.createIndex('objects_kind_owner_idx').on('objects').columns(['kind', 'owner_id']).execute();
  await db.schema.createIndex('objects_kind_runner_idx').on('objects').columns(['kind', 'runner_id']).execute();
  await db.schema
    .createIndex('objects_secret_hash_key')
    .on('objects')
    .column('secret_hash')
    .unique()
    .where(sql.ref('secret_hash'), 'is not', null)
    .execute();

  await db.schema
    .createTable('events')
    .addColumn('resource_version', 'bigint', (column) => column.primaryKey())
    .addColumn('kind', 'text', (column) => column.notNull())
    .addColumn('object_id', 'text', (column) => column.notNull())
    .addColumn('type', 'text', (column) => column.notNull())
    .addColumn('object', 'jsonb', (column) => column.notNull())
    .addColumn('owner_id', 'text', (column) => column.notNull())
    .addColumn('runner_id', 'text')
    .addColumn('previous_runner_id', 'text')
    .addColumn('previous_labels', 'jsonb')
    .execute();

  await db.schema
    .createTable('settings')
    .addColumn('key', 'text', (column) => column.primaryKey())
    .addColumn('value', 'jsonb', (column) => column.notNull())
    .addColumn('updated_time', 'timestamptz', (column) => column.notNull().defaultTo(sql`now()`))
    .execute();
}

/** Drops the three tables. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('settings').execute();
  await db.schema.dropTable('events').execute();
  await db.schema.dropTable('objects').execute();
}
