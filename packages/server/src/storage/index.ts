// Control-plane storage: the ResourceStore contract and its Kysely implementation (PGlite | PostgreSQL).
export type { ResourceStore, NewObject, ObjectFilter, UpdateOptions, Mutation, Lease } from './store.js';
export { openStore, SqlStore } from './sql-store.js';
export type { OpenStoreOptions } from './sql-store.js';
export { GoneError } from './errors.js';
export { newObjectId, ID_PREFIXES } from './ids.js';
export { openTestStore, testDatabaseUrl, closeSharedPglite } from './testing.js';
export type { TestStore } from './testing.js';
