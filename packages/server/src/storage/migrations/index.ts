// The static list of migrations, applied in name order by Kysely's Migrator.
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import * as initial from './0001-initial.js';

/**
 * A MigrationProvider over the compiled-in migrations. Each migration runs against `db.withSchema(schema)`
 * so one database can hold several independent stores (tests use a schema per test).
 * Add a migration: a new `NNNN-name.ts` with `up`/`down`, listed here; never edit a released one.
 */
export function staticMigrations(schema: string): MigrationProvider {
  const scoped = (module: { up(db: Kysely<unknown>): Promise<void>; down(db: Kysely<unknown>): Promise<void> }): Migration => ({
    up: (db) => module.up(db.withSchema(schema)),
    down: (db) => module.down(db.withSchema(schema)),
  });
  return {
    getMigrations: () => Promise.resolve({ '0001-initial': scoped(initial) }),
  };
}
