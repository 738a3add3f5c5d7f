// The runner's port proxy: routes `<port>-<env>.<domain>` and `/p/<env>/<port>/...` to that port inside the
// environment (its veth address, or its loopback from inside its namespace), with WebSocket upgrades and streamed
// bodies both ways (RFC 9110, RFC 6455). Owner ports need the proxy's session cookie, got by exchanging a
// short-lived server-signed token (`?warren-token=`); Public ports need nothing. Warren's cookie and token never
// reach the app. This module composes the parts (docs/design/0006, 0008):
// - admission.ts decides per request which environment and port it may reach;
// - targets.ts resolves that to a connectable address (TCP, or the environment's namespace for loopback-only ports);
// - relay.ts, the fast path: every connection starts there (a byte relay, one upstream connection per client
//   connection, for plain host-form requests that pass admission);
// - slow-path.ts, Node's HTTP server: takes a connection at the first request the relay cannot take (refusals,
//   token exchanges, the path form, upgrades, chunked uploads, malformed requests);
// - front-bridge.ts: the native front serving the address, when it runs; it hands what it does not relay over.
import { type AddressInfo, type Socket, createServer as createNetServer } from 'node:net';
import { type Environment, PORT_TOKEN_PARAMETER } from '@warren/api';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import type { PortTokenVerifier } from '../access/index.js';
import type { EnvironmentNetwork } from '../environment/index.js';
import { ProxyAdmission } from './admission.js';
import { startFrontBridge } from './front-bridge.js';
import { RelayConnection, type RelayHooks } from './relay.js';
import type { SessionSigner } from './session.js';
import { SlowPath } from './slow-path.js';
import { ProxyTargets } from './targets.js';

/** Query parameter carrying a server-signed port token; exchanged for the session cookie and never forwarded. */
export const TOKEN_PARAMETER = PORT_TOKEN_PARAMETER;

/** Options of {@link startPortProxy}. */
export interface PortProxyOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Domain of the host form `<port>-<env>.<domain>` (default `localhost`: `*.localhost` resolves to loopback). */
  domain?: string;
  /** The environments of this runner, freshest known objects (RunnerController.environments). */
  environments: () => Environment[];
  /** Where a running environment is reachable (LinuxBackend.network); undefined when not running. */
  network: (environmentId: string) => Promise<EnvironmentNetwork | undefined>;
  verifyToken: PortTokenVerifier;
  sessions: SessionSigner;
  /** Lifetime of the session cookie in seconds (default 8 h). */
  sessionSeconds?: number;
  /** Mark the cookie `Secure` (when a TLS front serves the proxy). Default false. */
  secureCookies?: boolean;
  /** Called for every proxied request and upgrade (activity tracking; the caller batches). */
  onActivity?: (environmentId: string) => void;
  logger?: Logger;
  /** Clock (tests). */
  now?: () => Date;
  /**
   * Serve the address with the native front (front.ts, docs/design/0008), compiled into `binDir` (e.g.
   * `<dataDir>/bin`). When it cannot be compiled or started (other than a bind error) the Node proxy listens on
   * the address itself, as it does without this option; when it dies later, the Node proxy takes the address over.
   * The hand-off socket lives in a private directory `proxy-*` made in `runDir` (default the OS temp directory);
   * a runner passes `<dataDir>/run`, which only it uses, so directories that killed runs left there are removed.
   */
  nativeFront?: { binDir: string; runDir?: string };
}

/** A listening port proxy. */
export interface PortProxy {
  /** Bound base URL, e.g. `http://127.0.0.1:7082`. */
  url: string;
  port: number;
  /** Who serves the public address: the native front, or the Node proxy alone. */
  readonly front: 'native' | 'node';
  /** Stops listening and ends open connections, upgraded ones included. */
  close(): Promise<void>;
}

/**
 * Starts the port proxy.
 * Answers: 404 `NotFound` when the request names no environment of this runner or a port outside 1-65535;
 * 401 `Unauthorized` for an Owner port without a valid cookie or token (an HTML page naming
 * `warren ports open <env> <port>` for browsers, else a Status JSON), 403 `Forbidden` for a token of another
 * environment or port; 409 `Conflict` when a name is ambiguous; 503 `ServiceUnavailable` when the environment
 * is not running; 502 `BadGateway`-style `ServiceUnavailable` when nothing listens on the port.
 * @throws {Error} (errno) when the address cannot be bound.
 */
export async function startPortProxy(options: PortProxyOptions): Promise<PortProxy> {
  const logger = (options.logger ?? silentLogger).child({ component: 'port-proxy' });
  const domain = (options.domain ?? 'localhost').toLowerCase();
  const proto = options.secureCookies ? 'https' : 'http';
  const onActivity = options.onActivity ?? (() => {});
  const targets = new ProxyTargets(options.network, logger);
  const admission = new ProxyAdmission({
    domain,
    environments: options.environments,
    network: (environmentId) => targets.network(environmentId),
    verifyToken: options.verifyToken,
    sessions: options.sessions,
    sessionSeconds: options.sessionSeconds ?? 8 * 3600,
    secureCookies: options.secureCookies ?? false,
    now: options.now ?? (() => new Date()),
  });
  const slowPath = new SlowPath({ domain, admission, targets, proto, onActivity, logger });

  // Every connection starts on the fast path (relay.ts) and is handed to the slow path at its first request the
  // relay cannot take.
  const relays = new Set<RelayConnection>();
  const hooks: RelayHooks = {
    admit: (head) => admission.admitFast(head),
    target: (relayAdmission) => targets.relayTarget(relayAdmission),
    handOff: (socket, buffered) => slowPath.handOff(socket, buffered),
    onActivity,
    proto,
    logger,
  };
  const relay = (socket: Socket, remoteAddress?: string): void => {
    relays.add(new RelayConnection(socket, hooks, (done) => relays.delete(done), remoteAddress));
  };
  // The Node proxy on the public address: without the native front, or after it died.
  const listener = createNetServer({ allowHalfOpen: true, noDelay: true }, (socket) => relay(socket));
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(port, options.host, () => {
        listener.off('error', reject);
        resolve();
      });
    });
  const native = options.nativeFront
    ? await startFrontBridge({
        ...options.nativeFront,
        host: options.host,
        port: options.port,
        proto,
        environments: options.environments,
        admission,
        targets,
        onActivity,
        accept(socket, remoteAddress) {
          slowPath.rememberClientAddress(socket, remoteAddress);
          relay(socket, remoteAddress);
        },
        onExit() {
          listen(port).catch((listenError: unknown) =>
            logger.error({ error: errorMessage(listenError) }, 'port proxy: cannot take the address over'),
          );
        },
        logger,
      })
    : undefined;
  if (!native) await listen(options.port);
  const port = native ? native.port : (listener.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  logger.info({ host: options.host, port, domain, front: native ? 'native' : 'node' }, 'port proxy listening');

  return {
    url: `http://${host}:${port}`,
    port,
    front: native ? 'native' : 'node',
    async close() {
      await native?.close();
      const closed = listener.listening ? new Promise<void>((resolve) => listener.close(() => resolve())) : Promise.resolve();
      for (const relay of relays) relay.destroy();
      slowPath.close();
      targets.destroy();
      await closed;
    },
  };
}
