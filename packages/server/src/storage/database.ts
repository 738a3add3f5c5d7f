// Opening the control-plane database: embedded PGlite (default) or PostgreSQL, with Kysely on top and
// the versioned migrations applied.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { Logger } from '@warren/base';
import { InvalidError } from '@warren/base';
import { Kysely, Migrator, PostgresDialect, sql, type ColumnType, type GeneratedAlways } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { staticMigrations } from './migrations/index.js';

/** JSON stored in a jsonb column: read back parsed, written as a JSON string. */
type Json = ColumnType<unknown, string, string>;
/** A bigint column: pg returns int8 as a string, PGlite as a number; written as a string or number. */
type Int8 = ColumnType<string | number, string | number, string | number>;
/** A timestamptz column: read as Date, written as an RFC 3339 string. */
type Timestamp = ColumnType<Date, string, string>;

/** Row of `objects`. */
export interface ObjectsTable {
  kind: string;
  id: string;
  name: string;
  name_scope: string;
  owner_id: string;
  generation: number;
  resource_version: Int8;
  created_time: Timestamp;
  deletion_time: ColumnType<Date | null, string | null, string | null>;
  labels: Json;
  spec: Json;
  status: Json;
  secret_hash: string | null;
  runner_id: GeneratedAlways<string | null>;
}

/** Row of `events`. */
export interface EventsTable {
  resource_version: Int8;
  kind: string;
  object_id: string;
  type: string;
  object: Json;
  owner_id: string;
  runner_id: string | null;
  previous_runner_id: string | null;
  previous_labels: ColumnType<unknown, string | null, string | null>;
}

/** Row of `settings`. */
export interface SettingsTable {
  key: string;
  value: Json;
  updated_time: ColumnType<Date, string | undefined, string>;
}

/** The Kysely database type of the store. */
export interface Database {
  objects: ObjectsTable;
  events: EventsTable;
  settings: SettingsTable;
}

/** Options of {@link openDatabase}. */
export interface DatabaseOptions {
  /** Data directory; PGlite keeps its files in `<dataDir>/db`. Without it (and without a URL) PGlite runs in memory. */
  dataDir?: string;
  /** `postgres://user:password@host:port/db`: use PostgreSQL instead of PGlite. */
  databaseUrl?: string;
  /** An already open PGlite instance to use (not closed by {@link OpenDatabase.close}); tests share one per file. */
  pglite?: PGlite;
  /** Schema holding the tables (default `public`); `[a-z_][a-z0-9_]*`. Tests use one per test. */
  schema?: string;
  /** PostgreSQL pool size (default 10). */
  poolSize?: number;
  logger: Logger;
}

/** An open database: `db` is scoped to the schema; `kind` says which engine. */
export interface OpenDatabase {
  kind: 'pglite' | 'postgres';
  schema: string;
  /** Kysely scoped to `schema` (every table reference is qualified). */
  db: Kysely<Database>;
  /** The PGlite instance (kind `pglite`). */
  pglite?: PGlite;
  /** Connection settings for dedicated PostgreSQL clients (LISTEN, leases) (kind `postgres`). */
  connectionString?: string;
  close(): Promise<void>;
}

/** The one Kysely (driver queue) per PGlite instance; see {@link openDatabase}. */
const kyselyByPglite = new WeakMap<PGlite, Kysely<Database>>();

const SCHEMA_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Opens PGlite (`<dataDir>/db`, or memory) or PostgreSQL (`databaseUrl`), creates `schema` if needed and
 * applies the migrations (Kysely's Migrator takes its own advisory lock, so concurrent server processes
 * migrate one at a time).
 * @throws {InvalidError} for a malformed schema name; the driver's error when the database cannot be reached
 * or a migration fails (wrapped, with `cause`).
 */
export async function openDatabase(options: DatabaseOptions): Promise<OpenDatabase> {
  const schema = options.schema ?? 'public';
  if (!SCHEMA_PATTERN.test(schema))
    throw new InvalidError(`invalid schema name "${schema}"`, [{ field: 'schema', message: 'must match [a-z_][a-z0-9_]*' }]);
  const log = options.logger.child({ component: 'database' });
  let raw: Kysely<Database>;
  let opened: Omit<OpenDatabase, 'db' | 'close' | 'schema'>;
  let closeDriver: () => Promise<void>;
  if (options.databaseUrl) {
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize ?? 10 });
    // An idle client losing its connection emits 'error' on the pool; without a listener that kills the process.
    pool.on('error', (error) => log.warn({ error: error.message }, 'idle database connection failed'));
    raw = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    opened = { kind: 'postgres', connectionString: options.databaseUrl };
    closeDriver = () => raw.destroy();
  } else {
    let pglite = options.pglite;
    const owned = pglite === undefined;
    if (!pglite) {
      if (options.dataDir) {
        const directory = join(options.dataDir, 'db');
        await mkdir(directory, { recursive: true });
        pglite = await PGlite.create(directory);
      } else {
        pglite = await PGlite.create();
      }
    }
    const instance = pglite;
    // PGlite is one session. Every Kysely on it must share one driver, whose queue runs one transaction at a
    // time; two drivers would interleave statements of two transactions in that session.
    let shared = kyselyByPglite.get(instance);
    if (!shared) {
      shared = new Kysely<Database>({ dialect: new PGliteDialect(instance) });
      kyselyByPglite.set(instance, shared);
    }
    raw = shared;
    opened = { kind: 'pglite', pglite: instance };
    // The dialect's destroy() closes PGlite; only do that for an instance we opened.
    closeDriver = async () => {
      if (owned) await raw.destroy();
    };
  }
  try {
    if (schema !== 'public') await sql`create schema if not exists ${sql.id(schema)}`.execute(raw);
    const migrator = new Migrator({ db: raw, provider: staticMigrations(schema), migrationTableSchema: schema });
    const { error, results } = await migrator.migrateToLatest();
    for (const result of results ?? []) {
      if (result.status === 'Success') log.info({ migration: result.migrationName, schema }, 'migration applied');
    }
    if (error) throw new Error('database migration failed', { cause: error });
  } catch (error) {
    await closeDriver().catch(() => {});
    throw error;
  }
  return { ...opened, schema, db: raw.withSchema(schema), close: closeDriver };
}
