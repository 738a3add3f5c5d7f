// Group commit of the SQL store: writes of this process queue in memory and commit in batches, one
// transaction and one NOTIFY per batch, each write keeping its own resourceVersion, event and error.
import type { Resource } from '@warren/api';
import { sql, type ExpressionBuilder, type Kysely, type Selectable } from 'kysely';
import type { PGlite } from '@electric-sql/pglite';
import type { Database, ObjectsTable, OpenDatabase } from './database.js';
import type { EventHub, EventRecord } from './event-hub.js';
import { isUniqueViolation } from './queries.js';
import { recordToRow, resourceToRow, rowToResource } from './row-mapping.js';
import { alreadyExists, BatchState, type WriteOperation } from './write-batch.js';

/** Writes per transaction at most (a bound on statement size: 12 parameters per object row, 9 per event row). */
const MAX_BATCH = 256;

/** A queued write and the settlement of its caller's promise. */
interface WriteJob {
  operation: WriteOperation;
  resolve: (result: Resource) => void;
  reject: (error: unknown) => void;
}

/** Stores open and ever opened per PGlite instance and schema (several only in tests); see {@link GroupCommitter}. */
const pgliteStores = new WeakMap<PGlite, Map<string, { open: number; opened: number }>>();

/**
 * Counts a store as open on `pglite` and `schema`, which tells the group committers of that instance and schema
 * whether one of them is the sole writer. Call it before the store reads anything, so a store opened next to
 * another makes both use transactions.
 * @returns the function that counts the store as closed again (call it once).
 */
export function registerPgliteStore(pglite: PGlite, schema: string): () => void {
  const counts = pgliteStores.get(pglite) ?? new Map<string, { open: number; opened: number }>();
  pgliteStores.set(pglite, counts);
  const count = counts.get(schema) ?? { open: 0, opened: 0 };
  count.open++;
  count.opened++;
  counts.set(schema, count);
  return () => {
    const registered = pgliteStores.get(pglite)?.get(schema);
    if (registered) registered.open--;
  };
}

/** What a {@link GroupCommitter} writes to and announces on. */
export interface GroupCommitterOptions {
  /** The store's database; its engine decides the write lock and the PGlite sole-writer fast path. */
  database: OpenDatabase;
  /** The store's hub: committed events are published to it before any write of their batch resolves. */
  hub: EventHub;
  /** The advisory lock key (decimal string) every writer of the schema takes for its transaction (PostgreSQL). */
  writeLockKey: string;
  /** The channel each batch's NOTIFY goes to (notifications.ts). */
  channel: string;
  /** Clock for createdTime. */
  now: () => Date;
}

/**
 * Commits queued writes in batches: one batch (one transaction, one lock hold, one commit) at a time; whatever
 * queued while a batch was committing forms the next one. Within a batch the jobs apply in queue order, each
 * taking the next resourceVersion, so commit order, resourceVersion order and queue order agree; a job that fails
 * (AlreadyExists, Conflict, NotFound, an error of its mutation) takes no resourceVersion and fails alone. A batch
 * costs the same few round trips as a single write did, so N concurrent writes cost about one commit.
 * docs/design/0001-resource-versions-and-watch.md.
 */
export class GroupCommitter {
  private readonly db: Kysely<Database>;
  private readonly database: OpenDatabase;
  private readonly hub: EventHub;
  /** Writes waiting for the committer (see {@link write}). */
  private readonly writeQueue: WriteJob[] = [];
  /** The running committer, while there is one. */
  private committing: Promise<void> | undefined;
  /** See {@link ownHead}. */
  private ownHeadValue = 0;
  /** PGlite sole writer: the head after its last batch, valid while no other store was opened (see knownHead). */
  private soleHead: { head: number; generation: number } | undefined;

  /** Starts idle; the first {@link write} starts committing. */
  constructor(private readonly options: GroupCommitterOptions) {
    this.database = options.database;
    this.db = options.database.db;
    this.hub = options.hub;
  }

  /** The newest resourceVersion this process has written or is committing: its NOTIFY needs no fetch. */
  get ownHead(): number {
    return this.ownHeadValue;
  }

  /**
   * Queues one write and resolves with its stored object once its batch committed and its events were published.
   * @throws what the write itself fails with (ConflictError, NotFoundError, the mutation's error, or the
   * database's error for this write); other writes of the batch are not affected.
   */
  write(operation: WriteOperation): Promise<Resource> {
    return new Promise<Resource>((resolve, reject) => {
      this.writeQueue.push({ operation, resolve, reject });
      this.committing ??= this.drainWrites();
    });
  }

  /** @returns a promise that settles when the writes queued so far have settled (never rejects). */
  settled(): Promise<void> {
    return this.committing ?? Promise.resolve();
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
    const ownHeadBefore = this.ownHeadValue;
    let fastPath = false;
    try {
      const run = async (db: Kysely<Database>, inTransaction: boolean) => {
        // PGlite is one session whose driver already runs one transaction at a time (and a session's own
        // advisory locks never block it), so only PostgreSQL needs the lock.
        if (this.database.kind === 'postgres') await sql`select pg_advisory_xact_lock(${this.options.writeLockKey}::bigint)`.execute(db);
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
        if (!inTransaction)
          this.soleHead = { head: state.records.at(-1)?.resourceVersion ?? state.head, generation: this.pgliteGeneration() };
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
      // A NOTIFY of another process may have been skipped as ours meanwhile (see the store's listen): catch up.
      this.ownHeadValue = ownHeadBefore;
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
    return this.database.kind === 'pglite' && pgliteStores.get(this.database.pglite!)?.get(this.database.schema)?.open === 1;
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
    const names = jobs.flatMap(({ operation }) =>
      operation.type === 'create' ? [[operation.kind, operation.nameScope, operation.object.name] as const] : [],
    );
    const wanted = (eb: ExpressionBuilder<Database, 'objects'>) =>
      eb.or([
        eb('objects.id', 'in', ids),
        ...(names.length > 0
          ? [
              eb(
                eb.refTuple('objects.kind', 'objects.name_scope', 'objects.name'),
                'in',
                names.map(([kind, scope, name]) => eb.tuple(kind, scope, name)),
              ),
            ]
          : []),
      ]);
    if (knownHead !== undefined) {
      // PGlite's sole writer knows the head; without the join the query plans in half the time.
      const rows = await trx.selectFrom('objects').selectAll().where(wanted).execute();
      const state = new BatchState(knownHead, this.options.now);
      for (const row of rows) state.load(rowToResource(row));
      return state;
    }
    const rows = await trx
      .selectFrom((eb) =>
        eb
          .selectFrom('events')
          .select((events) => events.fn.max('resource_version').as('head'))
          .as('h'),
      )
      .leftJoin('objects', (join) => join.on(wanted))
      .selectAll('objects')
      .select('h.head')
      .execute();
    const head = Number(rows[0]?.head ?? 0);
    const state = new BatchState(head, this.options.now);
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
    const events = state.records.map(recordToRow);
    this.ownHeadValue = Math.max(this.ownHeadValue, last.resourceVersion);
    const notify = sql<string>`pg_notify(${this.options.channel}, ${String(last.resourceVersion)})`.as('notified');
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
          .values(upserts.map(resourceToRow))
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
}

/** The error a write's caller gets when its transaction failed: a unique violation of a create is AlreadyExists. */
function mapWriteError(operation: WriteOperation, error: unknown): unknown {
  return operation.type === 'create' && isUniqueViolation(error) ? alreadyExists(operation.kind, operation.object.name, error) : error;
}
