// Test helpers: a store in a fresh schema on PGlite (one shared in-memory instance per test file) or on
// the PostgreSQL named by WARREN_TEST_DATABASE_URL. Used by the contract suite, controller and API tests.
import { randomBytes } from 'node:crypto';
import { PGlite } from '@electric-sql/pglite';
import { silentLogger } from '@warren/base';
import pg from 'pg';
import { openStore, type OpenStoreOptions, type SqlStore } from './sql-store.js';

/** The PostgreSQL URL for tests (`WARREN_TEST_DATABASE_URL`), or undefined when PostgreSQL tests cannot run. */
export function testDatabaseUrl(): string | undefined {
  return process.env['WARREN_TEST_DATABASE_URL'] || undefined;
}

/** A store in its own schema, plus more stores on the same data (a second "server process") and cleanup. */
export interface TestStore {
  store: SqlStore;
  /** The schema holding this test's tables. */
  schema: string;
  /** Opens another store on the same database and schema, as another server process would. */
  openAnother(overrides?: Partial<OpenStoreOptions>): Promise<SqlStore>;
  /** Closes every store opened here and drops the schema. */
  cleanup(): Promise<void>;
}

let sharedPglite: Promise<PGlite> | undefined;

/** Closes the in-memory PGlite shared by the PGlite test stores of this file (call in `afterAll`). */
export async function closeSharedPglite(): Promise<void> {
  const pending = sharedPglite;
  sharedPglite = undefined;
  if (pending) await (await pending).close();
}

/**
 * Opens a store for a test in a fresh schema `t_<random>` so tests are independent.
 * @param engine `pglite` (shared in-memory instance) or `postgres` (needs {@link testDatabaseUrl}).
 * @throws {Error} for `postgres` when WARREN_TEST_DATABASE_URL is not set.
 */
export async function openTestStore(engine: 'pglite' | 'postgres', overrides: Partial<OpenStoreOptions> = {}): Promise<TestStore> {
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const stores: SqlStore[] = [];
  let base: OpenStoreOptions;
  let dropSchema: () => Promise<void>;
  if (engine === 'postgres') {
    const databaseUrl = testDatabaseUrl();
    if (!databaseUrl) throw new Error('WARREN_TEST_DATABASE_URL is not set');
    base = { databaseUrl, schema, logger: silentLogger, poolSize: 4 };
    dropSchema = async () => {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        await client.query(`drop schema if exists ${client.escapeIdentifier(schema)} cascade`);
      } finally {
        await client.end();
      }
    };
  } else {
    sharedPglite ??= PGlite.create();
    const pglite = await sharedPglite;
    base = { pglite, schema, logger: silentLogger };
    dropSchema = async () => {
      if (!pglite.closed) await pglite.exec(`drop schema if exists "${schema}" cascade`);
    };
  }
  const open = async (more: Partial<OpenStoreOptions> = {}) => {
    const store = await openStore({ ...base, ...overrides, ...more });
    stores.push(store);
    return store;
  };
  const store = await open();
  return {
    store,
    schema,
    openAnother: open,
    cleanup: async () => {
      await Promise.allSettled(stores.map((each) => each.close()));
      await dropSchema();
    },
  };
}
