// The Kysely implementation of ResourceStore for PGlite and PostgreSQL: objects, gap-free watch history,
// in-process watch fan-out with LISTEN/NOTIFY across processes, advisory-lock leases, settings.
import { createHash } from 'node:crypto';
import { API_VERSION, type Kind, type Resource, type ResourceByKind, type WatchEvent } from '@warren/api';
import { ConflictError, InvalidError, NotFoundError, WarrenError, errorMessage, type Logger } from '@warren/base';
import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
import pg from 'pg';
import { openDatabase, type Database, type EventsTable, type ObjectsTable, type OpenDatabase } from './database.js';
import { GoneError } from './errors.js';
import { EventHub, type EventRecord, type HubSubscriber } from './event-hub.js';
import { newObjectId } from './ids.js';
import type { PGlite } from '@electric-sql/pglite';
import type { Lease, Mutation, NewObject, ObjectFilter, ResourceStore, UpdateOptions } from './store.js';

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
const HISTORY_PAGE = 500;

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

/** PostgreSQL unique_violation (Appendix A, "PostgreSQL Error Codes"). */
const UNIQUE_VIOLATION = '23505';

/**
 * {@link ResourceStore} over Kysely. See store.ts for the contract. Implementation notes:
 * - Every write runs in a transaction that first takes `pg_advisory_xact_lock(<store key>)` (PostgreSQL; on
 *   PGlite the single session's driver queue already runs one transaction at a time) and then sets
 *   resourceVersion = max(events.resource_version) + 1. The lock is held until commit, so writers of every
 *   server process commit one at a time in resourceVersion order: a watcher that has seen N can never later
 *   find an N' < N appear. A PostgreSQL SEQUENCE alone would not give this (nextval is handed out before commit
 *   and is not rolled back, so a later number can commit first and a reader would skip the earlier one).
 * - Group commit: writes of this process queue in memory and are committed in batches, one batch (one
 *   transaction, one lock hold, one commit) at a time; whatever queued while a batch was committing forms the
 *   next one. Within a batch the jobs apply in queue order, each taking the next resourceVersion, so commit
 *   order, resourceVersion order and queue order agree; a job that fails (AlreadyExists, Conflict, NotFound, an
 *   error of its mutation) takes no resourceVersion and fails alone. A batch costs the same few round trips as a
 *   single write did, so N concurrent writes cost about one commit. docs/design/0001-resource-versions-and-watch.md.
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
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly leases = new Set<Lease>();
  private stopListening: (() => Promise<void>) | undefined;
  private closed = false;
  /** Writes waiting for the group committer (see {@link SqlStore.write}). */
  private readonly writeQueue: WriteJob[] = [];
  /** The running committer, while there is one. */
  private committing: Promise<void> | undefined;
  /** The newest resourceVersion this process has written or is committing: its NOTIFY needs no fetch. */
  private ownHead = 0;
  /** PGlite sole writer: the head after its last batch, valid while no other store was opened (see knownHead). */
  private soleHead: { head: number; generation: number } | undefined;
  /** Counted in `pgliteStores` (PGlite), until close. */
  private registered = false;
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
    this.channel = `warren_events_${database.schema}`;
    this.historyLimit = options.eventHistoryLimit ?? DEFAULT_HISTORY;
    this.watchBufferSize = options.watchBufferSize ?? DEFAULT_WATCH_BUFFER;
    this.now = options.now ?? (() => new Date());
  }

  /** Starts the hub, LISTEN and the background timers. Called by {@link openStore}. */
  async start(): Promise<void> {
    if (this.engine === 'pglite') {
      // Registered before anything is read, so a store opened next to this one makes both use transactions.
      const counts = pgliteStores.get(this.database.pglite!) ?? new Map<string, { open: number; opened: number }>();
      pgliteStores.set(this.database.pglite!, counts);
      const count = counts.get(this.database.schema) ?? { open: 0, opened: 0 };
      count.open++;
      count.opened++;
      counts.set(this.database.schema, count);
      this.registered = true;
    }
    const head = await this.currentResourceVersion(this.db);
    this.hub = new EventHub((after, limit) => this.readEvents(after, limit), head, this.logger);
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

  async create<K extends Kind>(kind: K, object: NewObject<K>): Promise<ResourceByKind[K]> {
    const id = object.id ?? newObjectId(kind);
    const nameScope = kind === 'Environment' ? object.ownerId : '';
    const created = await this.write({ type: 'create', kind, id, nameScope, object });
    return structuredClone(created) as ResourceByKind[K];
  }

  async get<K extends Kind>(kind: K, id: string): Promise<ResourceByKind[K] | undefined> {
    if (this.lookups && LookupCache.kinds.has(kind)) return this.lookups.read(`get\u0000${kind}\u0000${id}`, () => this.getUncached(kind, id));
    return this.getUncached(kind, id);
  }

  private async getUncached<K extends Kind>(kind: K, id: string): Promise<ResourceByKind[K] | undefined> {
    const row = await this.db.selectFrom('objects').selectAll().where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
    return row ? (rowToResource(row) as ResourceByKind[K]) : undefined;
  }

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

  async list<K extends Kind>(kind: K, filter?: ObjectFilter): Promise<{ items: ResourceByKind[K][]; resourceVersion: string }> {
    // One snapshot for the items and the resourceVersion, so a watch from that resourceVersion misses nothing.
    return this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        const resourceVersion = await this.currentResourceVersion(trx);
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

  async delete<K extends Kind>(kind: K, id: string, options?: UpdateOptions): Promise<ResourceByKind[K]> {
    const deleted = await this.write({ type: 'delete', kind, id, options });
    return structuredClone(deleted) as ResourceByKind[K];
  }

  async *watch<K extends Kind>(
    kind: K,
    options: { fromResourceVersion?: string; filter?: ObjectFilter; signal: AbortSignal },
  ): AsyncIterable<WatchEvent<ResourceByKind[K]>> {
    const { signal, filter } = options;
    if (this.closed) throw new WarrenError('ServiceUnavailable', 503, 'the store is closed');
    let from: number | undefined;
    if (options.fromResourceVersion !== undefined) {
      if (!/^\d+$/.test(options.fromResourceVersion)) {
        throw new InvalidError('resourceVersion must be a decimal number', [{ field: 'resourceVersion', message: 'must be a decimal number' }], 'BadRequest', 400);
      }
      from = Number(options.fromResourceVersion);
    }
    // Subscribe before reading the list or history: what the read misses, the queue has (duplicates are skipped by rv).
    const queue = new WatchQueue(this.watchBufferSize, (record) => record.kind === kind && toWatchEvent(record, filter) !== undefined);
    const unsubscribe = this.hub.subscribe(queue);
    try {
      let last: number;
      if (from === undefined) {
        const listed = await this.list(kind, filter);
        last = Number(listed.resourceVersion);
        for (const item of listed.items) {
          if (signal.aborted) return;
          yield { type: 'ADDED', object: item };
        }
      } else {
        last = from;
        for (;;) {
          const records = await this.readEvents(last, HISTORY_PAGE);
          const first = records[0];
          if (!first) break;
          // The history is gap-free, so a missing successor means it was pruned.
          if (first.resourceVersion !== last + 1) {
            throw new GoneError(`resourceVersion ${last} is too old: the oldest kept event is ${first.resourceVersion}; list again`);
          }
          for (const record of records) {
            last = record.resourceVersion;
            if (record.kind !== kind) continue;
            const event = toWatchEvent(record, filter);
            if (event) {
              if (signal.aborted) return;
              yield event as WatchEvent<ResourceByKind[K]>;
            }
          }
          if (records.length < HISTORY_PAGE) break;
        }
      }
      for (;;) {
        const record = await queue.next(signal);
        if (record === undefined) return;
        if (record.resourceVersion <= last) continue;
        last = record.resourceVersion;
        const event = toWatchEvent(record, filter);
        if (event) yield event as WatchEvent<ResourceByKind[K]>;
      }
    } finally {
      unsubscribe();
    }
  }

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

  async findTokenBySecretHash(secretHash: string): Promise<ResourceByKind['Token'] | undefined> {
    if (this.lookups) return this.lookups.read(`secret\u0000${secretHash}`, () => this.findTokenUncached(secretHash));
    return this.findTokenUncached(secretHash);
  }

  private async findTokenUncached(secretHash: string): Promise<ResourceByKind['Token'] | undefined> {
    const row = await this.db.selectFrom('objects').selectAll().where('kind', '=', 'Token').where('secret_hash', '=', secretHash).executeTakeFirst();
    return row ? (rowToResource(row) as ResourceByKind['Token']) : undefined;
  }

  async tryAcquireLease(name: string): Promise<Lease | undefined> {
    if (this.closed) throw new WarrenError('ServiceUnavailable', 503, 'the store is closed');
    const lease = this.engine === 'postgres' ? await this.acquirePostgresLease(name) : this.acquirePgliteLease(name);
    if (lease) {
      this.leases.add(lease);
      lease.signal.addEventListener('abort', () => this.leases.delete(lease), { once: true });
    }
    return lease;
  }

  async getSetting<T>(key: string): Promise<T | undefined> {
    const row = await this.db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
    return row ? (row.value as T) : undefined;
  }

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
    const head = await this.currentResourceVersion(this.db);
    const result = await this.db.deleteFrom('events').where('resource_version', '<=', head - this.historyLimit).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** The newest committed resourceVersion seen by this process's watch hub. */
  get resourceVersion(): string {
    return String(this.hub.resourceVersion);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.committing; // settle the writes already queued
    if (this.registered) {
      const count = pgliteStores.get(this.database.pglite!)?.get(this.database.schema);
      if (count) count.open--;
      this.registered = false;
    }
    for (const timer of this.timers) clearInterval(timer);
    this.hub.close();
    await Promise.allSettled([...this.leases].map((lease) => lease.release()));
    await this.stopListening?.().catch(() => {});
    await this.database.close();
  }

  // ------------------------------------------------------------------ internals

  /**
   * Queues one write for the group committer and resolves with its stored object once its batch committed
   * (see the class comment). @throws what the write itself fails with (ConflictError, NotFoundError, the
   * mutation's error); other writes of the batch are not affected.
   */
  private write(operation: WriteOperation): Promise<Resource> {
    if (this.closed) return Promise.reject(new WarrenError('ServiceUnavailable', 503, 'the store is closed'));
    return new Promise<Resource>((resolve, reject) => {
      this.writeQueue.push({ operation, resolve, reject });
      this.committing ??= this.drainWrites();
    });
  }

  /** Commits queued writes, one batch at a time, until the queue is empty. */
  private async drainWrites(): Promise<void> {
    try {
      while (this.writeQueue.length > 0) await this.commitBatch(() => this.writeQueue.splice(0, MAX_BATCH), true);
    } finally {
      this.committing = undefined;
    }
  }

  /**
   * Runs a batch in one transaction: takes the write lock (PostgreSQL), then the batch (`take`: everything that
   * queued until the lock was ours, so writes that arrive while this batch waits for the lock or the PGlite
   * session still join it), reads the head resourceVersion and every
   * object the jobs name in one query, applies the jobs in order in memory (each failure stays with its job and
   * takes no resourceVersion), then stores the objects' final states, all events and one NOTIFY in one
   * statement (plus one for deletes). Round trips: begin, [lock], read, [delete], write, commit, whatever the
   * batch size. Events are published to this process's watchers in order after commit, before any job
   * resolves. When the transaction itself fails and `isolate` is set, each job is retried alone so only the
   * write that caused it fails.
   */
  private async commitBatch(take: () => WriteJob[], isolate: boolean): Promise<void> {
    let jobs: WriteJob[] | undefined;
    let outcomes: Array<{ result: Resource } | { error: unknown }>;
    let records: EventRecord[];
    let committed: WriteJob[];
    const ownHeadBefore = this.ownHead;
    let fastPath = false;
    try {
      const run = async (db: Kysely<Database>, inTransaction: boolean) => {
        // PGlite is one session whose driver already runs one transaction at a time (and a session's own
        // advisory locks never block it), so only PostgreSQL needs the lock.
        if (this.engine === 'postgres') await sql`select pg_advisory_xact_lock(${this.writeLockKey}::bigint)`.execute(db);
        const taken = take();
        jobs = taken;
        const state = await this.readBatchState(db, taken, inTransaction ? undefined : this.knownHead());
        const applied = taken.map((job) => {
          try {
            return { result: state.apply(job.operation) };
          } catch (error) {
            return { error };
          }
        });
        if (inTransaction || !state.hasDeletes()) await this.storeBatch(db, state);
        else await this.db.transaction().execute((trx) => this.storeBatch(trx, state));
        if (!inTransaction) this.soleHead = { head: state.records.at(-1)?.resourceVersion ?? state.head, generation: this.pgliteGeneration() };
        return { outcomes: applied, records: state.records, committed: taken };
      };
      // The sole store of a PGlite database is its only writer, and this committer runs one batch at a time, so
      // nothing can write between the batch's read and its write; the write is one statement, atomic on its own
      // (deletes make it two: then they share a transaction). Saves BEGIN and COMMIT, a third of a batch's cost.
      fastPath = this.isSolePgliteWriter();
      if (!fastPath) this.soleHead = undefined;
      ({ outcomes, records, committed } = fastPath
        ? await run(this.db, false)
        : await this.db.transaction().execute((trx) => run(trx, true)));
    } catch (error) {
      // A NOTIFY of another process may have been skipped as ours meanwhile (see listen): catch up.
      this.ownHead = ownHeadBefore;
      this.soleHead = undefined;
      this.hub.requestFetch();
      jobs ??= take(); // the transaction failed before it took its batch (e.g. the connection failed)
      // A store opened beside this one meanwhile may have written between our read and write: retry in transactions.
      if ((isolate && jobs.length > 1) || (fastPath && !this.isSolePgliteWriter())) {
        for (const job of jobs) await this.commitBatch(() => [job], false);
        return;
      }
      for (const job of jobs) job.reject(mapWriteError(job.operation, error));
      return;
    }
    for (const record of records) this.hub.publish(record);
    committed.forEach((job, index) => {
      const outcome = outcomes[index]!;
      if ('result' in outcome) job.resolve(outcome.result);
      else job.reject(outcome.error);
    });
  }

  /** True on PGlite while this is the only open store of its instance and schema (see {@link commitBatch}). */
  private isSolePgliteWriter(): boolean {
    return this.engine === 'pglite' && pgliteStores.get(this.database.pglite!)?.get(this.database.schema)?.open === 1;
  }

  /** How many stores were ever opened on this PGlite instance and schema: a change means someone else may have written. */
  private pgliteGeneration(): number {
    return pgliteStores.get(this.database.pglite!)?.get(this.database.schema)?.opened ?? 0;
  }

  /** The head resourceVersion as of this sole writer's last batch, unless another store was opened since. */
  private knownHead(): number | undefined {
    return this.soleHead && this.soleHead.generation === this.pgliteGeneration() ? this.soleHead.head : undefined;
  }

  /** Reads the head resourceVersion and every object the batch's jobs refer to (by id or, for creates, by name). */
  private async readBatchState(trx: Kysely<Database>, jobs: WriteJob[], knownHead: number | undefined): Promise<BatchState> {
    const ids = [...new Set(jobs.map((job) => job.operation.id))];
    const names = jobs.flatMap(({ operation }) => (operation.type === 'create' ? [[operation.kind, operation.nameScope, operation.object.name] as const] : []));
    const wanted = (eb: ExpressionBuilder<Database, 'objects'>) =>
      eb.or([
        eb('objects.id', 'in', ids),
        ...(names.length > 0
          ? [eb(eb.refTuple('objects.kind', 'objects.name_scope', 'objects.name'), 'in', names.map(([kind, scope, name]) => eb.tuple(kind, scope, name)))]
          : []),
      ]);
    if (knownHead !== undefined) {
      // PGlite's sole writer knows the head; without the join the query plans in half the time.
      const rows = await trx.selectFrom('objects').selectAll().where(wanted).execute();
      const state = new BatchState(knownHead, this.now);
      for (const row of rows) state.load(rowToResource(row));
      return state;
    }
    const rows = await trx
      .selectFrom((eb) => eb.selectFrom('events').select((events) => events.fn.max('resource_version').as('head')).as('h'))
      .leftJoin('objects', (join) => join.on(wanted))
      .selectAll('objects')
      .select('h.head')
      .execute();
    const head = Number(rows[0]?.head ?? 0);
    const state = new BatchState(head, this.now);
    for (const row of rows) if (row.id !== null) state.load(rowToResource(row as Selectable<ObjectsTable>));
    return state;
  }


  /** Writes the batch's final object states, its events and one NOTIFY (see {@link commitBatch}). */
  private async storeBatch(trx: Kysely<Database>, state: BatchState): Promise<void> {
    const last = state.records.at(-1);
    if (!last) return;
    const { upserts, deletes } = state.changes();
    // Deletes first, in their own statement: a name freed in this batch may be taken again by an insert, and the
    // data-modifying CTEs of one statement run in no defined order (PostgreSQL docs, "WITH Queries", 7.8.4).
    if (deletes.length > 0) await trx.deleteFrom('objects').where('id', 'in', deletes).execute();
    const events = state.records.map((event) => ({
      resource_version: event.resourceVersion,
      kind: event.kind,
      object_id: event.object.metadata.id,
      type: event.type,
      object: JSON.stringify(event.object),
      owner_id: event.object.metadata.ownerId,
      runner_id: runnerIdOf(event.object) ?? null,
      previous_runner_id: event.previousRunnerId ?? null,
      previous_labels: event.previousLabels === undefined ? null : JSON.stringify(event.previousLabels),
    }));
    this.ownHead = Math.max(this.ownHead, last.resourceVersion);
    const notify = sql<string>`pg_notify(${this.channel}, ${String(last.resourceVersion)})`.as('notified');
    if (upserts.length === 0) {
      await trx
        .with('event_write', (db) => db.insertInto('events').values(events).returning('resource_version'))
        .selectNoFrom(notify)
        .execute();
      return;
    }
    // Data-modifying CTEs always run to completion, referenced or not (PostgreSQL docs, "WITH Queries", 7.8.4).
    // An upsert on id updates rows that existed before the batch and inserts new ones; `secret_hash` is neither
    // inserted nor updated here (setTokenSecretHash owns it).
    await trx
      .with('object_write', (db) =>
        db
          .insertInto('objects')
          .values(
            upserts.map((resource) => ({
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
            })),
          )
          .onConflict((conflict) =>
            conflict.column('id').doUpdateSet((eb) => ({
              generation: eb.ref('excluded.generation'),
              resource_version: eb.ref('excluded.resource_version'),
              deletion_time: eb.ref('excluded.deletion_time'),
              labels: eb.ref('excluded.labels'),
              spec: eb.ref('excluded.spec'),
              status: eb.ref('excluded.status'),
            })),
          )
          .returning('id'),
      )
      .with('event_write', (db) => db.insertInto('events').values(events).returning('resource_version'))
      .selectNoFrom(notify)
      .execute();
  }
  private async currentResourceVersion(db: Kysely<Database>): Promise<number> {
    const row = await db
      .selectFrom('events')
      .select((eb) => eb.fn.max('resource_version').as('head'))
      .executeTakeFirst();
    return row?.head == null ? 0 : Number(row.head);
  }

  private async readEvents(after: number, limit: number): Promise<EventRecord[]> {
    const rows = await this.db.selectFrom('events').selectAll().where('resource_version', '>', after).orderBy('resource_version').limit(limit).execute();
    return rows.map(rowToRecord);
  }

  private async listen(): Promise<void> {
    const onPayload = (payload: string | undefined) => {
      const resourceVersion = Number(payload);
      // Our own commits reach the hub through publish(); anything older than them is fetched when they do.
      if (!Number.isFinite(resourceVersion) || resourceVersion <= this.ownHead) return;
      this.lookups?.invalidate(); // another store on this PGlite instance wrote: do not serve what it may have changed
      this.hub.notify(resourceVersion);
    };
    if (this.database.kind === 'pglite') {
      const pglite = this.database.pglite!;
      this.stopListening = await pglite.listen(this.channel, onPayload);
      return;
    }
    const listener = new PostgresListener(this.database.connectionString!, this.channel, onPayload, () => this.hub.requestFetch(), this.logger);
    await listener.start();
    this.stopListening = () => listener.stop();
  }

  private acquirePgliteLease(name: string): Lease | undefined {
    // PGlite is one process; leases are exclusive among the stores sharing the PGlite instance.
    const pglite = this.database.pglite!;
    const held = pgliteLeases.get(pglite) ?? new Set<string>();
    pgliteLeases.set(pglite, held);
    const key = `${this.database.schema}:${name}`;
    if (held.has(key)) return undefined;
    held.add(key);
    const controller = new AbortController();
    return {
      name,
      signal: controller.signal,
      release: () => {
        if (!controller.signal.aborted) {
          held.delete(key);
          controller.abort(new Error(`lease ${name} released`));
        }
        return Promise.resolve();
      },
    };
  }

  private async acquirePostgresLease(name: string): Promise<Lease | undefined> {
    const key = advisoryKey(`warren:${this.database.schema}:lease:${name}`);
    // application_name shows the holder in pg_stat_activity.
    const applicationName = `warren-lease:${this.database.schema}:${name}`.slice(0, 63);
    const client = new pg.Client({ connectionString: this.database.connectionString, keepAlive: true, application_name: applicationName });
    const controller = new AbortController();
    const logger = this.logger.child({ lease: name });
    const timers: { keepalive?: NodeJS.Timeout } = {};
    const lose = (reason: string) => {
      if (controller.signal.aborted) return;
      clearInterval(timers.keepalive);
      logger.warn({ reason }, 'lease lost');
      controller.abort(new Error(`lease ${name} lost: ${reason}`));
      client.end().catch(() => {});
    };
    client.on('error', (error) => lose(error.message));
    client.on('end', () => lose('connection closed'));
    await client.connect();
    let granted: boolean;
    try {
      const result = await client.query<{ granted: boolean }>('select pg_try_advisory_lock($1::bigint) as granted', [key]);
      granted = result.rows[0]?.granted === true;
    } catch (error) {
      controller.abort();
      await client.end().catch(() => {});
      throw error;
    }
    if (!granted) {
      controller.abort();
      await client.end().catch(() => {});
      return undefined;
    }
    // A session-level advisory lock lives as long as this connection; the query proves the connection is alive.
    const keepalive = setInterval(() => {
      client.query('select 1').catch((error: unknown) => lose(errorMessage(error)));
    }, this.options.leaseKeepaliveMs ?? 5_000);
    keepalive.unref();
    timers.keepalive = keepalive;
    return {
      name,
      signal: controller.signal,
      release: async () => {
        if (controller.signal.aborted) return;
        clearInterval(keepalive);
        controller.abort(new Error(`lease ${name} released`));
        await client.query('select pg_advisory_unlock($1::bigint)', [key]).catch(() => {});
        await client.end().catch(() => {});
      },
    };
  }
}

/** Stores open and ever opened per PGlite instance and schema (several only in tests); see SqlStore.isSolePgliteWriter. */
const pgliteStores = new WeakMap<PGlite, Map<string, { open: number; opened: number }>>();

/** Leases held per PGlite instance (one process), keyed `<schema>:<name>`. */
const pgliteLeases = new WeakMap<PGlite, Set<string>>();

/** LISTEN on a dedicated connection, reconnecting with a delay; `onReconnect` lets the hub catch up. */
class PostgresListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connectionString: string,
    private readonly channel: string,
    private readonly onPayload: (payload: string | undefined) => void,
    private readonly onReconnect: () => void,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.connectionString, keepAlive: true });
    let failed = false;
    const fail = (reason: string) => {
      if (failed || this.stopped) return;
      failed = true;
      this.logger.warn({ reason }, 'watch notification connection lost; reconnecting');
      client.end().catch(() => {});
      this.timer = setTimeout(() => {
        this.start().then(this.onReconnect, () => fail('reconnect failed'));
      }, 1_000);
      this.timer.unref();
    };
    client.on('error', (error) => fail(error.message));
    client.on('end', () => fail('connection closed'));
    client.on('notification', (message) => {
      if (message.channel === this.channel) this.onPayload(message.payload);
    });
    await client.connect();
    await client.query(`listen ${client.escapeIdentifier(this.channel)}`);
    this.client = client;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.client?.end().catch(() => {});
  }
}

/** A watcher's bounded queue: overflow ends the watch with 410 Gone instead of blocking writers. */
class WatchQueue implements HubSubscriber {
  private items: EventRecord[] = [];
  private head = 0;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  /** The signal whose abort wakes {@link next} (the watch's own; hooked once). */
  private hooked: AbortSignal | undefined;

  constructor(
    private readonly limit: number,
    private readonly relevant: (record: EventRecord) => boolean,
  ) {}

  push(record: EventRecord): void {
    if (this.error || !this.relevant(record)) return;
    if (this.items.length - this.head >= this.limit) {
      this.fail(new GoneError(`the watcher fell more than ${this.limit} events behind; list again`));
      return;
    }
    this.items.push(record);
    this.signal();
  }

  fail(error: Error): void {
    this.error ??= error;
    this.items = [];
    this.head = 0;
    this.signal();
  }

  /** @returns the next record, or undefined when `signal` aborted. @throws the error the queue failed with. */
  async next(signal: AbortSignal): Promise<EventRecord | undefined> {
    for (;;) {
      if (this.error) throw this.error;
      if (signal.aborted) return undefined;
      if (this.head < this.items.length) {
        const record = this.items[this.head++]!;
        if (this.head > 1024 && this.head * 2 > this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        return record;
      }
      // One abort listener per watch, not an add/remove per wait: with many watchers that pair cost more than the rest
      // of a delivery (bench/control-plane profile).
      if (this.hooked !== signal) {
        this.hooked = signal;
        signal.addEventListener('abort', () => this.signal(), { once: true });
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  private signal(): void {
    this.wake?.();
  }
}

// ------------------------------------------------------------------ lookup cache

/**
 * PGlite only: the answers of `get`, unfiltered `getByName` and `findTokenBySecretHash` for the small, rarely
 * written kinds that every API request reads to authenticate and validate (User, Token, Runner,
 * EnvironmentClass). Every query on PGlite costs about half a millisecond of the one thread everything runs on,
 * so these lookups were a third of the work of creating an environment.
 * Kept right by invalidation: the whole cache is dropped when the hub dispatches an event of one of these kinds
 * (this store's writes are dispatched before they are acknowledged), when another store on the same PGlite
 * instance notifies a commit, and on `setTokenSecretHash`. A read only fills the cache when no invalidation
 * happened while it ran, so a result read before a write is never kept after it. Not used on PostgreSQL, where
 * other processes write and their notifications arrive late.
 */
class LookupCache {
  static readonly kinds: ReadonlySet<Kind> = new Set<Kind>(['User', 'Token', 'Runner', 'EnvironmentClass']);
  private readonly entries = new Map<string, unknown>();
  private epoch = 0;

  /** @returns a copy of the cached answer for `key`, or what `load` reads (cached unless invalidated meanwhile). */
  async read<T>(key: string, load: () => Promise<T>): Promise<T> {
    if (this.entries.has(key)) return structuredClone(this.entries.get(key) as T);
    const epoch = this.epoch;
    const value = await load();
    if (epoch === this.epoch) this.entries.set(key, structuredClone(value));
    return value;
  }

  invalidate(): void {
    this.epoch++;
    this.entries.clear();
  }
}

// ------------------------------------------------------------------ group commit

/** A write as queued for the group committer. */
type WriteOperation =
  | { type: 'create'; kind: Kind; id: string; nameScope: string; object: NewObject<Kind> }
  | { type: 'update'; kind: Kind; id: string; mutation: Mutation<Kind>; options: UpdateOptions | undefined }
  | { type: 'delete'; kind: Kind; id: string; options: UpdateOptions | undefined };

/** A queued write and the settlement of its caller's promise. */
interface WriteJob {
  operation: WriteOperation;
  resolve: (result: Resource) => void;
  reject: (error: unknown) => void;
}

/** Writes per transaction at most (a bound on statement size: 12 parameters per object row, 9 per event row). */
const MAX_BATCH = 256;

/**
 * The objects one batch touches, as they are after each of its jobs so far, and the events the jobs made.
 * Jobs apply in queue order and see the effects of earlier jobs of the same batch; a job that throws changes
 * nothing and takes no resourceVersion, so the history stays gap-free.
 */
class BatchState {
  /** id → object after the jobs so far; `null` = absent (deleted in this batch). Ids not here do not exist. */
  private readonly objects = new Map<string, Resource | null>();
  /** name key (kind, scope, name) → id, or `null` when the name was freed in this batch. */
  private readonly names = new Map<string, string | null>();
  /** Ids that exist in the database (before the batch). */
  private readonly stored = new Set<string>();
  /** Ids written by a job of this batch. */
  private readonly touched = new Set<string>();
  readonly records: EventRecord[] = [];

  /** The resourceVersion of the batch's last event so far (the head it started from before any). */
  private nextHead: number;

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

/** The uniqueness scope of a name: the owner for Environments (unique per owner), '' for other kinds. */
function nameScopeOf(resource: Resource): string {
  return resource.kind === 'Environment' ? resource.metadata.ownerId : '';
}

function nameKey(kind: string, scope: string, name: string): string {
  return `${kind}\u0000${scope}\u0000${name}`;
}

/** The error a write's caller gets when its transaction failed: a unique violation of a create is AlreadyExists. */
function mapWriteError(operation: WriteOperation, error: unknown): unknown {
  return operation.type === 'create' && isUniqueViolation(error) ? alreadyExists(operation.kind, operation.object.name, error) : error;
}

// ------------------------------------------------------------------ helpers

/** A 64-bit advisory lock key (decimal string) for `name`: the first 8 bytes of its SHA-256, signed. */
function advisoryKey(name: string): string {
  const digest = createHash('sha256').update(name).digest();
  return digest.readBigInt64BE(0).toString();
}

function alreadyExists(kind: Kind, name: string, cause?: unknown): ConflictError {
  const error = new ConflictError(`${kind} "${name}" already exists`, 'AlreadyExists', [{ field: 'metadata.name', message: 'already exists' }]);
  if (cause !== undefined) Object.defineProperty(error, 'cause', { value: cause });
  return error;
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === UNIQUE_VIOLATION;
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

function rowToResource(row: Selectable<ObjectsTable>): Resource {
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

function rowToRecord(row: Selectable<EventsTable>): EventRecord {
  return {
    resourceVersion: Number(row.resource_version),
    kind: row.kind as Kind,
    type: row.type as EventRecord['type'],
    object: row.object as Resource,
    previousRunnerId: row.previous_runner_id ?? undefined,
    previousLabels: (row.previous_labels as Record<string, string> | null) ?? undefined,
  };
}

function runnerIdOf(object: Resource): string | undefined {
  const runnerId = (object.status as { runnerId?: unknown }).runnerId;
  return typeof runnerId === 'string' ? runnerId : undefined;
}

function filterExpression(eb: ExpressionBuilder<Database, 'objects'>, filter: ObjectFilter | undefined) {
  const conditions = [];
  if (filter?.ownerId !== undefined) conditions.push(eb('owner_id', '=', filter.ownerId));
  if (filter?.runnerId !== undefined) conditions.push(eb('runner_id', '=', filter.runnerId));
  if (filter?.labels && Object.keys(filter.labels).length > 0) {
    conditions.push(eb(sql.ref('labels'), '@>', sql<unknown>`cast(${JSON.stringify(filter.labels)} as jsonb)`));
  }
  return eb.and(conditions);
}

interface FilterView {
  ownerId: string;
  runnerId: string | undefined;
  labels: Record<string, string>;
}

function matches(view: FilterView, filter: ObjectFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.ownerId !== undefined && view.ownerId !== filter.ownerId) return false;
  if (filter.runnerId !== undefined && view.runnerId !== filter.runnerId) return false;
  for (const [key, value] of Object.entries(filter.labels ?? {})) if (view.labels[key] !== value) return false;
  return true;
}

/**
 * The event a watcher with `filter` sees for `record`, or undefined. An object that starts matching arrives
 * as ADDED and one that stops matching as DELETED (Kubernetes "watch" semantics for selectors).
 */
function toWatchEvent(record: EventRecord, filter: ObjectFilter | undefined): WatchEvent<Resource> | undefined {
  const now: FilterView = { ownerId: record.object.metadata.ownerId, runnerId: runnerIdOf(record.object), labels: record.object.metadata.labels };
  const matchesNow = matches(now, filter);
  if (record.type !== 'MODIFIED') return matchesNow ? { type: record.type, object: record.object } : undefined;
  const before: FilterView = { ...now, runnerId: record.previousRunnerId, labels: record.previousLabels ?? now.labels };
  const matchedBefore = matches(before, filter);
  if (matchesNow) return { type: matchedBefore ? 'MODIFIED' : 'ADDED', object: record.object };
  return matchedBefore ? { type: 'DELETED', object: record.object } : undefined;
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
