// Leases of the SQL store: PostgreSQL session advisory locks on dedicated connections; on PGlite (one process)
// a set of names per PGlite instance.
import { errorMessage, type Logger } from '@warren/base';
import pg from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import type { OpenDatabase } from './database.js';
import { advisoryKey } from './queries.js';
import type { Lease } from './store.js';

/** Leases held per PGlite instance (one process), keyed `<schema>:<name>`. */
const pgliteLeases = new WeakMap<PGlite, Set<string>>();

/** The leases one store took and still holds; see `ResourceStore.tryAcquireLease` (store.ts). */
export class LeaseKeeper {
  private readonly leases = new Set<Lease>();

  /**
   * @param keepaliveMs PostgreSQL: interval of the lease connection's liveness query in ms.
   * @param logger the store's logger; lease messages carry `lease: <name>`.
   */
  constructor(
    private readonly database: OpenDatabase,
    private readonly keepaliveMs: number,
    private readonly logger: Logger,
  ) {}

  /**
   * Tries to take the named lease (unique per schema).
   * @returns the lease, or undefined when another holder has it.
   * @throws the driver's error when the lease connection cannot be opened or queried (PostgreSQL).
   */
  async tryAcquire(name: string): Promise<Lease | undefined> {
    const lease = this.database.kind === 'postgres' ? await this.acquirePostgresLease(name) : this.acquirePgliteLease(name);
    if (lease) {
      this.leases.add(lease);
      lease.signal.addEventListener('abort', () => this.leases.delete(lease), { once: true });
    }
    return lease;
  }

  /** Releases every lease still held; never throws. */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.leases].map((lease) => lease.release()));
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
    }, this.keepaliveMs);
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
