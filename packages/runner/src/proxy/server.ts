// The runner's port proxy: routes `<port>-<env>.<domain>` and `/p/<env>/<port>/...` to that port inside the
// environment (its veth address, or its loopback through a helper in its namespace), with WebSocket upgrades and streamed bodies both ways (RFC 9110, RFC 6455).
// Owner ports need the proxy's session cookie, got by exchanging a short-lived server-signed token
// (`?warren-token=`); Public ports need nothing. Warren's cookie and token never reach the app.
// Two paths: every connection starts on the fast path (relay.ts: a byte relay to the app, one upstream connection
// per client connection, for plain host-form requests that pass auth); at the first request it cannot relay, the
// connection goes to the slow path, Node's HTTP server below, which answers refusals, token exchanges, the path
// form, upgrades, chunked uploads and malformed requests.
import { Agent, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import { type AddressInfo, type Server as NetServer, type Socket, createServer as createNetServer } from 'node:net';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { type Environment, PORT_TOKEN_PARAMETER, makeStatus } from '@warren/api';
import { type Logger, WarrenError, errorMessage, silentLogger } from '@warren/base';
import type { EnvironmentNetwork } from '../environment/backend.js';
import { listListeningSockets, loopbackOnly } from '../ports/listening.js';
import { connectInNamespace } from '../ports/loopback.js';
import { type FrontAnswer, type ProxyFront, ProxyFrontError, ensureProxyFront, readProxyLine, startProxyFront } from './front.js';
import { NamespaceAgent } from './loopback-agent.js';
import { parseProxyRoute, queryParameter, withoutQueryParameter, type ProxyRoute } from './route.js';
import { RelayConnection, type RelayAdmission, type RelayHooks, type RelayTarget } from './relay.js';
import type { RequestHead } from './request-head.js';
import { SESSION_COOKIE, type SessionSigner, sessionSetCookie, takeSessionCookies } from './session.js';
import type { PortTokenVerifier } from '../access/index.js';

/** Query parameter carrying a server-signed port token; exchanged for the session cookie and never forwarded. */
export const TOKEN_PARAMETER = PORT_TOKEN_PARAMETER;

/** Options of {@link startPortProxy}. */
export interface PortProxyOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Domain of the host form `<port>-<env>.<domain>` (default `localhost`: `*.localhost` resolves to loopback). */
  domain?: string;
  /** The environments of this runner, freshest known objects (RunnerAgent.environments). */
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

/** How long the proxy reuses an environment's network lookup, in ms. */
const NETWORK_CACHE_MS = 1000;

/** The part of a route that auth depends on. */
type RouteTarget = Pick<ProxyRoute, 'environment' | 'port'>;

/** A refusal answered before anything is forwarded. */
class ProxyError extends WarrenError {}

/** Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** The environment and address a request is allowed to reach, or the redirect of a token exchange. */
type Decision =
  | { kind: 'forward'; environment: Environment; network: EnvironmentNetwork; cookieRest: string | undefined }
  | { kind: 'redirect'; location: string; setCookie: string };

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
  const now = options.now ?? (() => new Date());
  const sessionSeconds = options.sessionSeconds ?? 8 * 3600;
  // Keep-alive to the apps: a new TCP connection per request would cost more than the proxying itself.
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 64 });
  const upgraded = new Set<Duplex>();
  // Where each environment is, for NETWORK_CACHE_MS: the backend reads its slot claim and runc's state file (a
  // large JSON document) on every call, which cost more than the proxying itself (bench/access). Only a running
  // environment's network is kept, so a started one is reachable at once; a stopped one answers 502 instead of
  // 503 for at most that long (its phase is still checked on every request).
  const networks = new Map<string, { network: Promise<EnvironmentNetwork | undefined>; expiresAt: number }>();
  const networkOf = (environmentId: string): Promise<EnvironmentNetwork | undefined> => {
    const now = performance.now();
    const cached = networks.get(environmentId);
    if (cached && cached.expiresAt > now) return cached.network;
    const network = options.network(environmentId).then(
      (found) => {
        if (!found) networks.delete(environmentId);
        return found;
      },
      (error: unknown) => {
        networks.delete(environmentId);
        throw error;
      },
    );
    networks.set(environmentId, { network, expiresAt: now + NETWORK_CACHE_MS });
    return network;
  };

  // Whether a port listens on the environment's loopback only (then it is reached from inside its namespace,
  // ports/loopback.ts), from /proc/<pid>/net/tcp{,6}, kept NETWORK_CACHE_MS per pid and port.
  const loopbackPorts = new Map<string, { loopback: Promise<boolean>; expiresAt: number }>();
  const isLoopbackOnly = (pid: number, port: number): Promise<boolean> => {
    const key = `${pid}:${port}`;
    const now = performance.now();
    const cached = loopbackPorts.get(key);
    if (cached && cached.expiresAt > now) return cached.loopback;
    const loopback = listListeningSockets(pid).then(
      (sockets) => loopbackOnly(sockets, port),
      () => false,
    );
    if (loopbackPorts.size > 4096) loopbackPorts.clear();
    loopbackPorts.set(key, { loopback, expiresAt: now + NETWORK_CACHE_MS });
    return loopback;
  };
  // Keep-alive helper connections for loopback-only ports, one pool per environment process (its namespace).
  const namespaceAgents = new Map<number, NamespaceAgent>();
  const namespaceAgentOf = (pid: number): NamespaceAgent => {
    let found = namespaceAgents.get(pid);
    if (!found) {
      found = new NamespaceAgent(`/proc/${pid}/ns/net`, logger, (idle) => {
        if (namespaceAgents.get(pid) === idle) namespaceAgents.delete(pid);
      });
      namespaceAgents.set(pid, found);
    }
    return found;
  };
  /**
   * How the upstream request connects: the keep-alive agent to the veth address, or for a loopback-only port the
   * keep-alive pool of helpers in its namespace; an upgrade gets a connection of its own either way.
   */
  const connection = async (network: EnvironmentNetwork, port: number, upgrade: boolean) => {
    if (!(await isLoopbackOnly(network.pid, port))) return { host: network.address, agent: upgrade ? false : agent };
    if (!upgrade) return { host: '127.0.0.1', agent: namespaceAgentOf(network.pid) };
    return { host: '127.0.0.1', createConnection: () => connectInNamespace(`/proc/${network.pid}/ns/net`, port, logger) as Socket };
  };

  /**
   * The environments a route names (by id or name).
   * @throws {ProxyError} 404 `NotFound` for a port outside 1-65535 or when no environment of this runner matches.
   */
  function candidatesOf(route: RouteTarget): Environment[] {
    if (!Number.isInteger(route.port) || route.port < 1 || route.port > 65535) {
      throw new ProxyError('NotFound', 404, `port ${route.port} is outside 1-65535`);
    }
    const candidates = options.environments().filter((environment) => environment.metadata.id === route.environment || environment.metadata.name === route.environment);
    if (candidates.length === 0) throw new ProxyError('NotFound', 404, `environment "${route.environment}" is not on this runner`);
    return candidates;
  }

  /**
   * The environment a request may reach: `granted` (by a port token), else the first candidate a valid session
   * value grants for this port, else the candidate whose port is Public; it must be Running.
   * @param sessionValues values of Warren's cookie in the request (none when it carries a token).
   * @throws {ProxyError} 409 `Conflict` for several Public candidates, 401 `Unauthorized` for none,
   *   503 `ServiceUnavailable` when the environment is not Running.
   */
  function admitted(route: RouteTarget, candidates: Environment[], sessionValues: string[], granted: Environment | undefined): Environment {
    let environment = granted;
    if (!environment && sessionValues.length > 0) {
      const nowSeconds = Math.floor(now().getTime() / 1000);
      for (const value of sessionValues) {
        const session = options.sessions.verify(value, nowSeconds);
        if (!session || (session.port !== 0 && session.port !== route.port)) continue;
        environment = candidates.find((candidate) => candidate.metadata.id === session.environmentId);
        if (environment) break;
      }
    }
    if (!environment) {
      const isPublic = candidates.filter((candidate) => candidate.spec.ports.some((entry) => entry.port === route.port && entry.visibility === 'Public'));
      if (isPublic.length > 1) throw new ProxyError('Conflict', 409, `several environments are named "${route.environment}"; address it by id`);
      environment = isPublic[0];
    }
    if (!environment) {
      throw new ProxyError('Unauthorized', 401, `port ${route.port} of environment "${route.environment}" is private: run "warren ports open ${route.environment} ${route.port}"`);
    }
    if (environment.status.phase !== 'Running') {
      throw new ProxyError('ServiceUnavailable', 503, `environment "${route.environment}" is ${environment.status.phase}, not Running`);
    }
    return environment;
  }

  async function decide(request: IncomingMessage, route: ProxyRoute, upgrade: boolean): Promise<Decision> {
    const candidates = candidatesOf(route);
    const { values, rest } = takeSessionCookies(request.headers.cookie);

    let granted: Environment | undefined;
    const token = queryParameter(request.url ?? '/', TOKEN_PARAMETER);
    if (token !== undefined) {
      const claims = await options.verifyToken(token);
      granted = candidates.find((candidate) => candidate.metadata.id === claims.environmentId);
      if (!granted) throw new ProxyError('Forbidden', 403, `the port token does not grant access to environment "${route.environment}"`);
      if (claims.port !== 0 && claims.port !== route.port) throw new ProxyError('Forbidden', 403, `the port token grants port ${claims.port}, not ${route.port}`);
      if (!upgrade) {
        const expiresAt = Math.floor(now().getTime() / 1000) + sessionSeconds;
        const value = options.sessions.sign({ userId: claims.userId, environmentId: claims.environmentId, port: claims.port, expiresAt });
        return {
          kind: 'redirect',
          location: withoutQueryParameter(request.url ?? '/', TOKEN_PARAMETER),
          setCookie: sessionSetCookie(value, route.cookiePath, sessionSeconds, options.secureCookies ?? false),
        };
      }
    }
    const environment = admitted(route, candidates, token === undefined ? values : [], granted);
    const network = await networkOf(environment.metadata.id);
    if (!network) throw new ProxyError('ServiceUnavailable', 503, `environment "${route.environment}" is not running on this runner`);
    return { kind: 'forward', environment, network, cookieRest: rest };
  }

  // The client address of each connection the native front handed over (its PROXY line), for X-Forwarded-For.
  const clientAddresses = new WeakMap<object, string>();

  // The route of each Host seen on the fast path (null: not the host form): it depends on nothing else.
  const hostRoutes = new Map<string, RouteTarget | null>();

  /**
   * The environment and port a host-form request may reach with these session cookie values: the route and auth
   * checks of {@link decide} for a request without a port token.
   * @returns undefined for the path form (or no route) and every refusal.
   */
  function admitHost(host: string, sessionValues: string[]): { environmentId: string; port: number } | undefined {
    let route = hostRoutes.get(host);
    if (route === undefined) {
      const parsed = parseProxyRoute(host, '/', domain);
      route = parsed?.form === 'host' ? { environment: parsed.environment, port: parsed.port } : null;
      if (hostRoutes.size >= 1024) hostRoutes.clear();
      hostRoutes.set(host, route);
    }
    if (route === null) return undefined;
    try {
      return { environmentId: admitted(route, candidatesOf(route), sessionValues, undefined).metadata.id, port: route.port };
    } catch (error) {
      if (error instanceof ProxyError) return undefined;
      throw error;
    }
  }

  /**
   * The fast path's admission of a request (relay.ts): {@link admitHost}, and no port token in the query.
   * @returns undefined (slow path) for the path form, a port token in the query, and every refusal.
   */
  function admitFast(head: RequestHead): RelayAdmission | undefined {
    if (head.target.includes('?') && queryParameter(head.target, TOKEN_PARAMETER) !== undefined) return undefined;
    // Only a Cookie field that names Warren's cookie is split (and then rewritten); others reach the app as sent.
    const session = head.cookie?.includes(SESSION_COOKIE) ? takeSessionCookies(head.cookie) : undefined;
    const admission = admitHost(head.host, session?.values ?? []);
    if (admission === undefined) return undefined;
    return { ...admission, stripCookie: session !== undefined, cookie: session?.rest };
  }

  /**
   * The native front's question (front.ts): where a host-form request with these session values may go, for at
   * most {@link NETWORK_CACHE_MS} (the front also forgets every answer when an environment's phase or ports change).
   */
  async function decideForFront(host: string, sessionValues: string[]): Promise<FrontAnswer> {
    const deny: FrontAnswer = { kind: 'deny', ttlMs: NETWORK_CACHE_MS };
    const admission = admitHost(host, sessionValues);
    if (admission === undefined) return deny;
    const network = await networkOf(admission.environmentId);
    if (!network) return deny;
    const target = (await isLoopbackOnly(network.pid, admission.port)) ? { pid: network.pid } : { address: network.address };
    return { kind: 'grant', ttlMs: NETWORK_CACHE_MS, ...admission, target };
  }

  /**
   * Where the fast path connects: the environment's veth address, or for a loopback-only port one helper in its
   * namespace for the whole client connection (ports/loopback.ts); undefined (slow path) when it is not running.
   */
  async function relayTarget(admission: RelayAdmission): Promise<RelayTarget | undefined> {
    const network = await networkOf(admission.environmentId);
    if (!network) return undefined;
    if (await isLoopbackOnly(network.pid, admission.port)) {
      return { open: () => connectInNamespace(`/proc/${network.pid}/ns/net`, admission.port, logger) };
    }
    return { host: network.address, port: admission.port };
  }

  /** Request headers for the app: hop-by-hop and Warren's cookie removed, X-Forwarded-* added. */
  function forwardHeaders(request: IncomingMessage, route: ProxyRoute, cookieRest: string | undefined, upgrade: boolean): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    const named = connectionTokens(request.headers);
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || name === 'cookie') continue;
      headers[name] = value;
    }
    if (cookieRest !== undefined) headers['cookie'] = cookieRest;
    const remote = clientAddresses.get(request.socket) ?? request.socket.remoteAddress ?? '';
    const prior = request.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${remote}` : remote;
    headers['x-forwarded-host'] = request.headers.host ?? '';
    headers['x-forwarded-proto'] = options.secureCookies ? 'https' : 'http';
    if (route.prefix) headers['x-forwarded-prefix'] = route.prefix;
    if (upgrade) {
      headers['connection'] = 'Upgrade';
      headers['upgrade'] = request.headers.upgrade ?? 'websocket';
    }
    return headers;
  }

  function refuse(request: IncomingMessage, error: unknown): { code: number; headers: Record<string, string>; body: string } {
    const known = error instanceof WarrenError;
    if (!known) logger.warn({ url: request.url, error: errorMessage(error) }, 'proxy request failed');
    const status = known ? makeStatus(error.reason, error.message, undefined, error.code) : makeStatus('InternalError', 'the port proxy failed');
    const wantsHtml = (request.headers.accept ?? '').includes('text/html');
    if (wantsHtml) {
      return { code: status.code, headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }, body: htmlPage(status.code, status.reason, status.message) };
    }
    return { code: status.code, headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }, body: JSON.stringify(status) };
  }

  async function handleRequest(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const route = parseProxyRoute(request.headers.host, request.url ?? '/', domain);
    let decision: Decision;
    try {
      if (!route) throw new ProxyError('NotFound', 404, `no environment port here: use http://<port>-<env>.${domain}/ or /p/<env>/<port>/`);
      decision = await decide(request, route, false);
    } catch (error) {
      const answer = refuse(request, error);
      request.resume();
      response.writeHead(answer.code, answer.headers).end(answer.body);
      return;
    }
    if (decision.kind === 'redirect') {
      request.resume();
      // 303 turns the retry into a GET (fine for navigations); 307 keeps another method and its body (RFC 9110 §15.4).
      const code = request.method === 'GET' || request.method === 'HEAD' ? 303 : 307;
      response.writeHead(code, { location: decision.location, 'set-cookie': decision.setCookie, 'cache-control': 'no-store' }).end();
      return;
    }
    options.onActivity?.(decision.environment.metadata.id);
    const upstream = httpRequest({
      ...(await connection(decision.network, route.port, false)),
      port: route.port,
      method: request.method,
      path: withoutQueryParameter(route.path, TOKEN_PARAMETER),
      headers: forwardHeaders(request, route, decision.cookieRest, false),
    });
    upstream.on('response', (answer) => {
      const headers: IncomingHttpHeaders = {};
      const named = connectionTokens(answer.headers);
      for (const [name, value] of Object.entries(answer.headers)) if (!HOP_BY_HOP.has(name) && !named.has(name)) headers[name] = value;
      response.writeHead(answer.statusCode ?? 502, answer.statusMessage, headers);
      // Headers go out with the first body chunk (one write); an answer whose body has not started by the next
      // turn of the event loop (a stream, server-sent events) gets its headers flushed alone.
      setImmediate(() => {
        if (!response.headersSent && !response.destroyed) response.flushHeaders();
      });
      // pipe(), not pipeline(): pipeline() makes an AbortController per call and aborts it when done, whose
      // DOMException cost more than the rest of the request (bench/access profile).
      answer.on('error', () => response.destroy());
      answer.pipe(response);
    });
    upstream.on('error', (error) => {
      if (response.headersSent) {
        response.destroy();
        return;
      }
      const status = makeStatus('ServiceUnavailable', `nothing answered on port ${route.port} of environment "${route.environment}": ${errorMessage(error)}`, undefined, 502);
      response.writeHead(502, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(status));
    });
    response.on('close', () => {
      if (!response.writableFinished) upstream.destroy();
    });
    request.on('error', () => upstream.destroy());
    request.pipe(upstream);
  }

  async function handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const route = parseProxyRoute(request.headers.host, request.url ?? '/', domain);
    let decision: Decision;
    try {
      if (!route) throw new ProxyError('NotFound', 404, 'no environment port here');
      decision = await decide(request, route, true);
      if (decision.kind !== 'forward') throw new ProxyError('InternalError', 500, 'unexpected redirect on an upgrade');
    } catch (error) {
      const answer = refuse(request, error);
      socket.end(rawResponse(answer.code, answer.headers, answer.body));
      return;
    }
    options.onActivity?.(decision.environment.metadata.id);
    const upstream = httpRequest({
      ...(await connection(decision.network, route.port, true)),
      port: route.port,
      method: request.method,
      path: withoutQueryParameter(route.path, TOKEN_PARAMETER),
      headers: forwardHeaders(request, route, decision.cookieRest, true),
    });
    upstream.on('upgrade', (answer, upstreamSocket, upstreamHead) => {
      upgraded.add(socket);
      upgraded.add(upstreamSocket);
      const lines = [`HTTP/1.1 ${answer.statusCode ?? 101} ${answer.statusMessage ?? 'Switching Protocols'}`];
      for (let index = 0; index + 1 < answer.rawHeaders.length; index += 2) lines.push(`${answer.rawHeaders[index]}: ${answer.rawHeaders[index + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      (socket as Socket).setNoDelay?.(true);
      // A loopback-only port's connection is a helper's stdio, not a socket.
      (upstreamSocket as Partial<Socket>).setNoDelay?.(true);
      const done = () => {
        upgraded.delete(socket);
        upgraded.delete(upstreamSocket);
        socket.destroy();
        upstreamSocket.destroy();
      };
      pipeline(upstreamSocket, socket, done);
      pipeline(socket, upstreamSocket, done);
    });
    upstream.on('response', (answer) => {
      // The app declined the upgrade: pass its answer through and close.
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => socket.end(rawResponse(answer.statusCode ?? 502, headers, Buffer.concat(chunks).toString('utf8'))));
    });
    upstream.on('error', (error) => {
      const status = makeStatus('ServiceUnavailable', `nothing answered on port ${route.port}: ${errorMessage(error)}`, undefined, 502);
      socket.end(rawResponse(502, { 'content-type': 'application/json; charset=utf-8' }, JSON.stringify(status)));
    });
    upstream.end();
  }

  const server = createServer({ requestTimeout: 0, keepAliveTimeout: 5_000 }, (request, response) => {
    handleRequest(request, response).catch((error: unknown) => {
      logger.warn({ error: errorMessage(error) }, 'proxy request failed');
      response.destroy();
    });
  });
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(request, socket, head).catch((error: unknown) => {
      logger.warn({ error: errorMessage(error) }, 'proxy upgrade failed');
      socket.destroy();
    });
  });
  server.on('clientError', (_error, socket) => socket.destroy());
  // The HTTP server gets its connections from the fast path, never from a listen() of its own; 'listening' starts
  // its connection tracking (headersTimeout checks, closeAllConnections), as listen() would.
  server.emit('listening');

  const relays = new Set<RelayConnection>();
  const hooks: RelayHooks = {
    admit: admitFast,
    target: relayTarget,
    handOff(socket, buffered) {
      // Paused while the bytes go back in front, so that the HTTP server's parser reads them first.
      socket.pause();
      if (buffered !== undefined && buffered.length > 0) socket.unshift(buffered);
      server.emit('connection', socket);
      socket.resume();
    },
    onActivity: options.onActivity ?? (() => {}),
    proto: options.secureCookies ? 'https' : 'http',
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
  const native = options.nativeFront ? await startNativeFront(options.nativeFront) : undefined;
  if (!native) await listen(options.port);
  const port = native ? native.front.port : (listener.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  logger.info({ host: options.host, port, domain, front: native ? 'native' : 'node' }, 'port proxy listening');

  /**
   * Starts the native front with a hand-off listener on a unix socket in a private directory (mode 0700, so only
   * the runner's user can claim a client address with a PROXY line).
   * @returns undefined when the front cannot be compiled or started (logged; the Node proxy listens instead).
   * @throws {ProxyFrontError} when the front cannot bind the address (`code` as Node's, e.g. `EADDRINUSE`).
   */
  async function startNativeFront(front: { binDir: string; runDir?: string }): Promise<{ front: ProxyFront; handOff: NetServer; dir: string } | undefined> {
    let binary: string;
    let dir: string | undefined;
    const handOff = createNetServer({ allowHalfOpen: true }, (socket) => readProxyLine(socket, (handed, remoteAddress) => {
      clientAddresses.set(handed, remoteAddress);
      relay(handed, remoteAddress);
      handed.resume();
    }));
    try {
      binary = await ensureProxyFront(front.binDir, logger);
      if (front.runDir !== undefined) {
        await mkdir(front.runDir, { recursive: true, mode: 0o700 });
        for (const stale of await readdir(front.runDir)) if (stale.startsWith('proxy-')) await rm(join(front.runDir, stale), { recursive: true, force: true });
      }
      dir = await mkdtemp(join(front.runDir ?? tmpdir(), front.runDir === undefined ? 'warren-proxy-' : 'proxy-'));
      const path = join(dir, 'hand-off.sock');
      await new Promise<void>((resolve, reject) => {
        handOff.once('error', reject);
        // A long accept queue: the front retries a full one, but a burst should not have to wait for that.
        handOff.listen({ path, backlog: 4096 }, () => resolve());
      });
    } catch (error) {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      logger.warn({ error: errorMessage(error) }, 'port proxy: the native front is not available, Node serves the address');
      return undefined;
    }
    return startFrontProcess(binary, handOff, dir);
  }

  /** Starts the compiled front with the hand-off listener ready in `dir`; the rest as {@link startNativeFront}. */
  async function startFrontProcess(binary: string, handOff: NetServer, dir: string): Promise<{ front: ProxyFront; handOff: NetServer; dir: string } | undefined> {
    let front: ProxyFront;
    try {
      front = await startProxyFront({
        binary,
        host: options.host,
        port: options.port,
        handOffPath: join(dir, 'hand-off.sock'),
        proto: options.secureCookies ? 'https' : 'http',
        decide: decideForFront,
        onActivity: options.onActivity ?? (() => {}),
        onExit(error) {
          logger.error({ error: errorMessage(error) }, 'port proxy: the native front stopped, Node serves the address');
          listen(port).catch((listenError: unknown) => logger.error({ error: errorMessage(listenError) }, 'port proxy: cannot take the address over'));
        },
        logger,
      });
    } catch (error) {
      handOff.close();
      await rm(dir, { recursive: true, force: true });
      // Bind errors are the caller's to handle (service.ts picks a free port on EADDRINUSE), as Node's would be.
      if (error instanceof ProxyFrontError && (error.code.startsWith('EADDR') || error.code === 'EACCES')) throw error;
      logger.warn({ error: errorMessage(error) }, 'port proxy: the native front did not start, Node serves the address');
      return undefined;
    }
    return { front, handOff, dir };
  }

  // The front keeps answers for up to NETWORK_CACHE_MS; it forgets them as soon as what they depend on changes.
  let seen = native ? fingerprint(options.environments()) : '';
  const watch = native
    ? setInterval(() => {
        const now = fingerprint(options.environments());
        if (now !== seen) native.front.flush();
        seen = now;
      }, FRONT_FLUSH_CHECK_MS).unref()
    : undefined;

  return {
    url: `http://${host}:${port}`,
    port,
    front: native ? 'native' : 'node',
    async close() {
      clearInterval(watch);
      if (native) {
        await native.front.close();
        native.handOff.close();
        await rm(native.dir, { recursive: true, force: true });
      }
      const closed = listener.listening ? new Promise<void>((resolve) => listener.close(() => resolve())) : Promise.resolve();
      for (const relay of relays) relay.destroy();
      server.closeAllConnections();
      server.close();
      for (const socket of upgraded) socket.destroy();
      agent.destroy();
      for (const namespaceAgent of namespaceAgents.values()) namespaceAgent.destroy();
      namespaceAgents.clear();
      await closed;
    },
  };
}

/** How often the proxy checks whether the environments changed so the native front must forget its answers, in ms. */
const FRONT_FLUSH_CHECK_MS = 100;

/** What the native front's answers depend on: each environment's id, name, phase and port visibility. */
function fingerprint(environments: Environment[]): string {
  let text = '';
  for (const environment of environments) {
    text += `${environment.metadata.id} ${environment.metadata.name} ${environment.status.phase}`;
    for (const entry of environment.spec.ports) text += ` ${entry.port}:${entry.visibility}`;
    text += '\n';
  }
  return text;
}

/** Header names listed in `Connection` (RFC 9110 §7.6.1): hop-by-hop as well. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  if (!value) return new Set();
  return new Set(value.split(',').map((token) => token.trim().toLowerCase()).filter((token) => token !== ''));
}

function rawResponse(code: number, headers: Record<string, string>, body: string): string {
  const reason = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable' }[code] ?? 'Error';
  const lines = [`HTTP/1.1 ${code} ${reason}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), `content-length: ${Buffer.byteLength(body)}`, 'connection: close'];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char] ?? char);
}

/** The page browsers get for a refusal; the 401 one says how to get access. */
function htmlPage(code: number, reason: string, message: string): string {
  const title = code === 401 ? 'This port is private' : `${code} ${reason}`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>\n`;
}
