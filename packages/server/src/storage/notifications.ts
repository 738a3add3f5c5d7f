// LISTEN/NOTIFY of the SQL store: how a store learns that another store (or server process) committed events.
import type { Logger } from '@warren/base';
import pg from 'pg';
import type { OpenDatabase } from './database.js';

/**
 * The channel a store's commits are announced on; every batch issues `pg_notify(<channel>, <last rv>)` in its
 * transaction (see group-commit.ts). One channel per schema, so stores of different schemas do not wake each other.
 */
export function commitChannel(schema: string): string {
  return `warren_events_${schema}`;
}

/**
 * Starts listening on `channel`: PGlite through its own `listen` (stores sharing the instance), PostgreSQL on a
 * dedicated connection that reconnects after a loss ({@link PostgresListener}).
 * @param onPayload called with each notification's payload (the committing batch's last resourceVersion).
 * @param onReconnect PostgreSQL: called after a reconnect, when notifications may have been missed.
 * @returns the function that stops listening.
 * @throws the driver's error when the first LISTEN fails.
 */
export async function listenForCommits(
  database: OpenDatabase,
  channel: string,
  onPayload: (payload: string | undefined) => void,
  onReconnect: () => void,
  logger: Logger,
): Promise<() => Promise<void>> {
  if (database.kind === 'pglite') {
    const pglite = database.pglite!;
    return pglite.listen(channel, onPayload);
  }
  const listener = new PostgresListener(database.connectionString!, channel, onPayload, onReconnect, logger);
  await listener.start();
  return () => listener.stop();
}

/** LISTEN on a dedicated connection, reconnecting with a delay; `onReconnect` lets the hub catch up. */
class PostgresListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param onPayload called with the payload of each notification on `channel`.
   * @param onReconnect called after the connection was lost and LISTEN is in place again (1 s after the loss).
   */
  constructor(
    private readonly connectionString: string,
    private readonly channel: string,
    private readonly onPayload: (payload: string | undefined) => void,
    private readonly onReconnect: () => void,
    private readonly logger: Logger,
  ) {}

  /** Connects and issues LISTEN. @throws the driver's error when that fails (later failures reconnect). */
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

  /** Stops reconnecting and closes the connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.client?.end().catch(() => {});
  }
}
