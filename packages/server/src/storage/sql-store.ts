// The Kysely implementation of ResourceStore for PGlite and PostgreSQL: the facade over objects, gap-free watch
// history (group-commit.ts), in-process watch fan-out (watch.ts) with LISTEN/NOTIFY across processes
// (notifications.ts), advisory-lock leases (leases.ts), the PGlite lookup cache (lookup-cache.ts), settings.
import type { Kind, Resource, ResourceByKind, WatchEvent } from '@warren/api';
import { ConflictError, NotFoundError, WarrenError, errorMessage, type Logger } from '@warren/base';
import type { Kysely } from 'kysely';
import { openDatabase, type Database, type OpenDatabase } from './database.js';
import { EventHub } from './event-hub.js';
import { GroupCommitter, registerPgliteStore } from './group-commit.js';
import { newObjectId } from './ids.js';
import { LeaseKeeper } from './leases.js';
import { LookupCache } from './lookup-cache.js';
import { commitChannel, listenForCommits } from './notifications.js';
import { advisoryKey, currentResourceVersion, filterExpression, isUniqueViolation, readEvents } from './queries.js';
import { rowToResource } from './row-mapping.js';
import type { PGlite } from '@electric-sql/pglite';
import type { Lease, Mutation, NewObject, ObjectFilter, ResourceStore, UpdateOptions } from './store.js';
import { watchEvents } from './watch.js';
import type { WriteOperation } from './write-batch.js';

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /** Data directory; PGlite keeps its files in `<dataDir>/db`. Without it and without a URL, PGlite runs in memory. */
  dataDir?: string;
  /** `postgres://...`: use PostgreSQL (several server processes may share it) instead of PGlite. */
  databaseUrl?: string;
  logger: Logger;
  /** Schema holding the tables (default `public`); tests use one schema per test. */
  schema?: string;
  /** Share an open PGlite instance (tests); it is not closed by {@link SqlStore.close}. */
  pglite?: PGlite;
  /** PostgreSQL pool size (default 10). */
  poolSize?: number;
  /** Events kept for resuming watches (default 10 000); older resourceVersions get 410 Gone. */
  eventHistoryLimit?: number;
  /** Events a watcher may have queued before it is ended with 410 Gone (default 4 096). */
  watchBufferSize?: number;
  /** Interval of history pruning in ms (default 30 000). */
  pruneIntervalMs?: number;
  /** PostgreSQL: interval of the safety-net poll for events of other processes in ms (default 5 000). */
  pollIntervalMs?: number;
  /** PostgreSQL: interval of the lease connection's liveness query in ms (default 5 000). */
  leaseKeepaliveMs?: number;
  /** Clock for createdTime (tests). */
  now?: () => Date;
}

const DEFAULT_HISTORY = 10_000;
const DEFAULT_WATCH_BUFFER = 4_096;

/**
 * Opens the store: PGlite (files under `<dataDir>/db`) by default, PostgreSQL (a `pg` pool) when
 * `databaseUrl` is set; applies migrations and starts the watch machinery.
 * @throws when the database cannot be opened or migrated (the driver's error, or an Error with `cause`).
 */
export async function openStore(options: OpenStoreOptions): Promise<SqlStore> {
  const database = await openDatabase(options);
  try {
    const store = new SqlStore(database, options);
    await store.start();
    return store;
  } catch (error) {
    await database.close().catch(() => {});
    throw error;
  }
}

/**
 * {@link ResourceStore} over Kysely. See store.ts for the contract. Implementation notes:
 * - Every write runs in a transaction that first takes `pg_advisory_xact_lock(<store key>)` (PostgreSQL; on
 *   PGlite the single session's driver queue already runs one transaction at a time) and then sets
 *   resourceVersion = max(events.resource_version) + 1. The lock is held until commit, so writers of every
 *   server process commit one at a time in resourceVersion order: a watcher that has seen N can never later
 *   find an N' < N appear. A PostgreSQL SEQUENCE alone would not give this (nextval is handed out before commit
 *   and is not rolled back, so a later number can commit first and a reader would skip the earlier one).
 * - Group commit: writes of this process queue in memory and are committed in batches (see {@link GroupCommitter}).
 * - Each batch inserts its events in the same transaction and issues one `pg_notify(<channel>, last rv)`; the
 *   committing process hands the events to its {@link EventHub} right after commit (no round trip), other
 *   processes learn of them through LISTEN and read them from `events`.
 */
export class SqlStore implements ResourceStore {
  /** Which engine backs this store. */
  readonly engine: 'pglite' | 'postgres';
  private readonly db: Kysely<Database>;
  private readonly logger: Logger;
  private readonly writeLockKey: string;
  private readonly channel: string;
  private readonly historyLimit: number;
  private readonly watchBufferSize: number;
  private readonly now: () => Date;
  private hub!: EventHub;
  private committer!: GroupCommitter;
  private readonly leases: LeaseKeeper;
  private readonly timers: NodeJS.Timeout[] = [];
  private stopListening: (() => Promise<void>) | undefined;
  private closed = false;
  /** PGlite: counts this store out of the open stores of its instance and schema (see group-commit.ts), until close. */
  private unregister: (() => void) | undefined;
  /** PGlite only: cached lookups of the small kinds (see {@link LookupCache}). */
  private lookups: LookupCache | undefined;

  /** Use {@link openStore}. */
  constructor(
    private readonly database: OpenDatabase,
    private readonly options: OpenStoreOptions,
  ) {
    this.engine = database.kind;
    this.db = database.db;
    this.logger = options.logger.child({ component: 'store' });
    this.writeLockKey = advisoryKey(`warren:${database.schema}:write`);
    this.channel = commitChannel(database.schema);
    this.historyLimit = options.eventHistoryLimit ?? DEFAULT_HISTORY;
    this.watchBufferSize = options.watchBufferSize ?? DEFAULT_WATCH_BUFFER;
    this.now = options.now ?? (() => new Date());
    this.leases = new LeaseKeeper(database, options.leaseKeepaliveMs ?? 5_000, this.logger);
  }

  /** Starts the hub, LISTEN and the background timers. Called by {@link openStore}. */
  async start(): Promise<void> {
    // Registered before anything is read, so a store opened next to this one makes both use transactions.
    if (this.engine === 'pglite') this.unregister = registerPgliteStore(this.database.pglite!, this.database.schema);
    const head = await currentResourceVersion(this.db);
    this.hub = new EventHub((after, limit) => readEvents(this.db, after, limit), head, this.logger);
    this.committer = new GroupCommitter({
      database: this.database,
      hub: this.hub,
      writeLockKey: this.writeLockKey,
      channel: this.channel,
      now: this.now,
    });
    if (this.engine === 'pglite') {
      const cache = new LookupCache();
      this.lookups = cache;
      this.hub.subscribe({
        push: (record) => {
          if (LookupCache.kinds.has(record.kind)) cache.invalidate();
        },
        fail: () => {
          // The hub dropped us (history pruned past it, or closing): without events the cache cannot stay right.
          cache.invalidate();
          this.lookups = undefined;
        },
      });
    }
    await this.listen();
    const prune = setInterval(() => {
      this.pruneEvents().catch((error: unknown) => this.logger.warn({ error: errorMessage(error) }, 'pruning watch events failed'));
    }, this.options.pruneIntervalMs ?? 30_000);
    prune.unref();
    this.timers.push(prune);
    if (this.engine === 'postgres') {
      // Safety net for a lost NOTIFY (e.g. while the LISTEN connection was reconnecting).
      const poll = setInterval(() => this.hub.requestFetch(), this.options.pollIntervalMs ?? 5_000);
      poll.unref();
      this.timers.push(poll);
    }
  }

  /** See {@link ResourceStore.create}; the id is generated (kind-prefixed) unless `object.id` is given. */
  async create<K extends Kind>(kind: K, object: NewObject<K>): Promise<ResourceByKind[K]> {
    const id = object.id ?? newObjectId(kind);
    const nameScope = kind === 'Environment' ? object.ownerId : '';
    const created = await this.write({ type: 'create', kind, id, nameScope, object });
    return structuredClone(created) as ResourceByKind[K];
  }

  /** See {@link ResourceStore.get}. */
  async get<K extends Kind>(kind: K, id: string): Promise<ResourceByKind[K] | undefined> {
    if (this.lookups && LookupCache.kinds.has(kind))
      return this.lookups.read(`get\u0000${kind}\u0000${id}`, () => this.getUncached(kind, id));
    return this.getUncached(kind, id);
  }

  private async getUncached<K extends Kind>(kind: K, id: string): Promise<ResourceByKind[K] | undefined> {
    const row = await this.db.selectFrom('objects').selectAll().where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
    return row ? (rowToResource(row) as ResourceByKind[K]) : undefined;
  }

  /** See {@link ResourceStore.getByName}. */
  async getByName<K extends Kind>(kind: K, name: string, filter?: ObjectFilter): Promise<ResourceByKind[K][]> {
    if (this.lookups && LookupCache.kinds.has(kind) && filter === undefined) {
      return this.lookups.read(`name\u0000${kind}\u0000${name}`, () => this.getByNameUncached(kind, name, filter));
    }
    return this.getByNameUncached(kind, name, filter);
  }

  private async getByNameUncached<K extends Kind>(kind: K, name: string, filter: ObjectFilter | undefined): Promise<ResourceByKind[K][]> {
    const rows = await this.db
      .selectFrom('objects')
      .selectAll()
      .where('kind', '=', kind)
      .where('name', '=', name)
      .where((eb) => filterExpression(eb, filter))
      .orderBy('created_time')
      .orderBy('id')
      .execute();
    return rows.map((row) => rowToResource(row) as ResourceByKind[K]);
  }

  /** See {@link ResourceStore.list}. */
  async list<K extends Kind>(kind: K, filter?: ObjectFilter): Promise<{ items: ResourceByKind[K][]; resourceVersion: string }> {
    // One snapshot for the items and the resourceVersion, so a watch from that resourceVersion misses nothing.
    return this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        const resourceVersion = await currentResourceVersion(trx);
        const rows = await trx
          .selectFrom('objects')
          .selectAll()
          .where('kind', '=', kind)
          .where((eb) => filterExpression(eb, filter))
          .orderBy('created_time')
          .orderBy('id')
          .execute();
        return { items: rows.map((row) => rowToResource(row) as ResourceByKind[K]), resourceVersion: String(resourceVersion) };
      });
  }

  /** See {@link ResourceStore.update}. The mutation may run more than once when its batch has to be retried (see `write`). */
  async update<K extends Kind>(kind: K, id: string, mutation: Mutation<K>, options?: UpdateOptions): Promise<ResourceByKind[K]> {
    const updated = await this.write({ type: 'update', kind, id, mutation: mutation as unknown as Mutation<Kind>, options });
    return structuredClone(updated) as ResourceByKind[K];
  }

  /** See {@link ResourceStore.delete}. */
  async delete<K extends Kind>(kind: K, id: string, options?: UpdateOptions): Promise<ResourceByKind[K]> {
    const deleted = await this.write({ type: 'delete', kind, id, options });
    return structuredClone(deleted) as ResourceByKind[K];
  }

  /**
   * See {@link ResourceStore.watch}; implemented by {@link watchEvents}.
   * @throws {WarrenError} 503 (on the first `next()`) when the store is closed.
   */
  watch<K extends Kind>(
    kind: K,
    options: { fromResourceVersion?: string; filter?: ObjectFilter; signal: AbortSignal },
  ): AsyncIterable<WatchEvent<ResourceByKind[K]>> {
    const source = {
      isClosed: () => this.closed,
      hub: this.hub,
      bufferSize: this.watchBufferSize,
      list: <L extends Kind>(listKind: L, filter: ObjectFilter | undefined) => this.list(listKind, filter),
      readEvents: (after: number, limit: number) => readEvents(this.db, after, limit),
    };
    return watchEvents(source, kind, options);
  }

  /** See {@link ResourceStore.setTokenSecretHash}. @throws {NotFoundError}; {ConflictError} `AlreadyExists` for a secret already in use. */
  async setTokenSecretHash(tokenId: string, secretHash: string): Promise<void> {
    try {
      const result = await this.db
        .updateTable('objects')
        .set({ secret_hash: secretHash })
        .where('kind', '=', 'Token')
        .where('id', '=', tokenId)
        .executeTakeFirst();
      this.lookups?.invalidate();
      if (Number(result.numUpdatedRows) === 0) throw new NotFoundError('Token', tokenId);
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConflictError('a token with this secret already exists', 'AlreadyExists');
      throw error;
    }
  }

  /** See {@link ResourceStore.findTokenBySecretHash}. */
  async findTokenBySecretHash(secretHash: string): Promise<ResourceByKind['Token'] | undefined> {
    if (this.lookups) return this.lookups.read(`secret\u0000${secretHash}`, () => this.findTokenUncached(secretHash));
    return this.findTokenUncached(secretHash);
  }

  private async findTokenUncached(secretHash: string): Promise<ResourceByKind['Token'] | undefined> {
    const row = await this.db
      .selectFrom('objects')
      .selectAll()
      .where('kind', '=', 'Token')
      .where('secret_hash', '=', secretHash)
      .executeTakeFirst();
    return row ? (rowToResource(row) as ResourceByKind['Token']) : undefined;
  }

  /** See {@link ResourceStore.tryAcquireLease} and {@link LeaseKeeper}. @throws {WarrenError} 503 when the store is closed. */
  async tryAcquireLease(name: string): Promise<Lease | undefined> {
    if (this.closed) throw new WarrenError('ServiceUnavailable', 503, 'the store is closed');
    return this.leases.tryAcquire(name);
  }

  /** See {@link ResourceStore.getSetting}. */
  async getSetting<T>(key: string): Promise<T | undefined> {
    const row = await this.db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
    return row ? (row.value as T) : undefined;
  }

  /** See {@link ResourceStore.setSetting}: inserts or replaces the JSON value of `key`. */
  async setSetting(key: string, value: unknown): Promise<void> {
    const json = JSON.stringify(value);
    const updatedTime = this.now().toISOString();
    await this.db
      .insertInto('settings')
      .values({ key, value: json, updated_time: updatedTime })
      .onConflict((conflict) => conflict.column('key').doUpdateSet({ value: json, updated_time: updatedTime }))
      .execute();
  }

  /**
   * Deletes watch events older than the newest `eventHistoryLimit` ones (runs in the background too).
   * @returns the number of events deleted.
   */
  async pruneEvents(): Promise<number> {
    const head = await currentResourceVersion(this.db);
    const result = await this.db
      .deleteFrom('events')
      .where('resource_version', '<=', head - this.historyLimit)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** The newest committed resourceVersion seen by this process's watch hub. */
  get resourceVersion(): string {
    return String(this.hub.resourceVersion);
  }

  /**
   * Settles the queued writes, then stops the timers, ends every watch (503), releases the leases, stops
   * listening and closes the database (a shared PGlite instance stays open). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.committer.settled(); // settle the writes already queued
    this.unregister?.();
    this.unregister = undefined;
    for (const timer of this.timers) clearInterval(timer);
    this.hub.close();
    await this.leases.releaseAll();
    await this.stopListening?.().catch(() => {});
    await this.database.close();
  }

  /**
   * Queues one write for the group committer (see {@link GroupCommitter.write}).
   * @throws {WarrenError} 503 when the store is closed; what the write itself fails with.
   */
  private write(operation: WriteOperation): Promise<Resource> {
    if (this.closed) return Promise.reject(new WarrenError('ServiceUnavailable', 503, 'the store is closed'));
    return this.committer.write(operation);
  }

  private async listen(): Promise<void> {
    const onPayload = (payload: string | undefined) => {
      const resourceVersion = Number(payload);
      // Our own commits reach the hub through publish(); anything older than them is fetched when they do.
      if (!Number.isFinite(resourceVersion) || resourceVersion <= this.committer.ownHead) return;
      this.lookups?.invalidate(); // another store on this PGlite instance wrote: do not serve what it may have changed
      this.hub.notify(resourceVersion);
    };
    this.stopListening = await listenForCommits(this.database, this.channel, onPayload, () => this.hub.requestFetch(), this.logger);
  }
}
