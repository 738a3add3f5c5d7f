// The slow path's keep-alive pool for ports bound to an environment's loopback only: the http server reuses helper
// connections (ports/loopback.ts, one nsenter+socat each) across requests, as its TCP pool reuses TCP connections,
// instead of starting a helper per request.
import { Agent, type ClientRequestArgs } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@warren/base';
import { connectInNamespace } from '../ports/index.js';

/** How long an idle helper connection is kept for reuse, in ms (an app's `Keep-Alive: timeout` hint can shorten it). */
const IDLE_MS = 4_000;
/** Idle helper connections kept per environment and port. */
const MAX_FREE = 16;

/**
 * A keep-alive connection pool into one network namespace, as an `http.Agent` (passed as a request's `agent`):
 * its connections are helper streams into the namespace (`connectInNamespace`), kept alive between requests
 * (RFC 9112 §9.3). Requests name host `127.0.0.1` and the port; a connection the app closes
 * is dropped from the pool (as a socket without half-open would be), an idle one after {@link IDLE_MS}.
 * `destroy()` kills the pooled helpers.
 */
export class NamespaceConnectionPool extends Agent {
  /**
   * @param namespacePath e.g. `/proc/<pid>/ns/net`.
   * @param onIdle called when the pool holds no connection any more (the owner may forget it).
   */
  constructor(
    readonly namespacePath: string,
    private readonly logger: Logger,
    private readonly onIdle: (pool: NamespaceConnectionPool) => void,
  ) {
    super({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: MAX_FREE, timeout: IDLE_MS });
  }

  override createConnection(options: ClientRequestArgs): Duplex {
    const stream = connectInNamespace(this.namespacePath, Number(options.port), this.logger);
    // Not half-open: when the app ends its side the connection is done, so the pool must not hand it out again.
    stream.on('end', () => stream.end());
    // http.Agent's own 'close' listener removes the connection from its lists; look after it has run.
    stream.on('close', () => setImmediate(() => this.idle() && this.onIdle(this)));
    return stream;
  }

  /** Whether no connection is open, in use or pending. */
  idle(): boolean {
    const empty = (lists: NodeJS.ReadOnlyDict<unknown[]>) => Object.values(lists).every((list) => list === undefined || list.length === 0);
    return empty(this.sockets) && empty(this.freeSockets) && empty(this.requests);
  }
}
