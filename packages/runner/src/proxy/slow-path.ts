// The port proxy's slow path: Node's HTTP server, fed with the connections the fast path (relay.ts) hands over. It
// answers refusals (a page for browsers, a Status otherwise), exchanges port tokens for the session cookie, and
// proxies the path form, WebSocket upgrades (RFC 6455), chunked uploads and whatever else the fast path leaves,
// with streamed bodies both ways (RFC 9110).
import {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
  createServer,
  request as httpRequest,
} from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream';
import { PORT_TOKEN_PARAMETER, makeStatus } from '@warren/api';
import { type Logger, WarrenError, errorMessage } from '@warren/base';
import { type Decision, type ProxyAdmission, ProxyError } from './admission.js';
import { parseProxyRoute, withoutQueryParameter, type ProxyRoute } from './route.js';
import type { ProxyTargets } from './targets.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Options of {@link SlowPath}. */
export interface SlowPathOptions {
  /** Domain of the host form, lower case (for the route and the 404 page). */
  domain: string;
  admission: ProxyAdmission;
  targets: ProxyTargets;
  /** X-Forwarded-Proto: `https` behind a TLS front. */
  proto: 'http' | 'https';
  /** Called for every proxied request and upgrade. */
  onActivity: (environmentId: string) => void;
  logger: Logger;
}

/**
 * The Node HTTP server of the slow path. It never listens itself: {@link handOff} gives it connections.
 * Answers: 404 `NotFound` when the request names no environment port; the refusals of {@link ProxyAdmission.decide};
 * a 303 (GET, HEAD) or 307 redirect setting the session cookie for a port token; 502 `ServiceUnavailable` when
 * nothing answers on the port.
 */
export class SlowPath {
  private readonly server: Server;
  private readonly upgraded = new Set<Duplex>();
  // The client address of each connection the native front handed over (its PROXY line), for X-Forwarded-For.
  private readonly clientAddresses = new WeakMap<object, string>();

  constructor(private readonly options: SlowPathOptions) {
    const { logger } = options;
    this.server = createServer({ requestTimeout: 0, keepAliveTimeout: 5_000 }, (request, response) => {
      this.handleRequest(request, response).catch((error: unknown) => {
        logger.warn({ error: errorMessage(error) }, 'proxy request failed');
        response.destroy();
      });
    });
    this.server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.handleUpgrade(request, socket, head).catch((error: unknown) => {
        logger.warn({ error: errorMessage(error) }, 'proxy upgrade failed');
        socket.destroy();
      });
    });
    this.server.on('clientError', (_error, socket) => socket.destroy());
    // The HTTP server gets its connections from the fast path, never from a listen() of its own; 'listening' starts
    // its connection tracking (headersTimeout checks, closeAllConnections), as listen() would (Node 20).
    this.server.emit('listening');
  }

  /** Gives a connection to the HTTP server; `buffered` (bytes read but not forwarded) goes back in front of it. */
  handOff(socket: Socket, buffered: Buffer | undefined): void {
    // Paused while the bytes go back in front, so that the HTTP server's parser reads them first.
    socket.pause();
    if (buffered !== undefined && buffered.length > 0) socket.unshift(buffered);
    this.server.emit('connection', socket);
    socket.resume();
  }

  /** Records the client's address of a connection the native front handed over (X-Forwarded-For names it). */
  rememberClientAddress(socket: Socket, remoteAddress: string): void {
    this.clientAddresses.set(socket, remoteAddress);
  }

  /** Ends every connection of the HTTP server, upgraded ones included. */
  close(): void {
    this.server.closeAllConnections();
    this.server.close();
    for (const socket of this.upgraded) socket.destroy();
  }

  private async handleRequest(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const route = parseProxyRoute(request.headers.host, request.url ?? '/', this.options.domain);
    let decision: Decision;
    try {
      if (!route)
        throw new ProxyError(
          'NotFound',
          404,
          `no environment port here: use http://<port>-<env>.${this.options.domain}/ or /p/<env>/<port>/`,
        );
      decision = await this.options.admission.decide(request, route, false);
    } catch (error) {
      const answer = this.refuse(request, error);
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
    this.options.onActivity(decision.environment.metadata.id);
    const upstream = httpRequest({
      ...(await this.options.targets.httpConnection(decision.network, route.port, false)),
      port: route.port,
      method: request.method,
      path: withoutQueryParameter(route.path, PORT_TOKEN_PARAMETER),
      headers: this.forwardHeaders(request, route, decision.cookieRest, false),
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
      const status = makeStatus(
        'ServiceUnavailable',
        `nothing answered on port ${route.port} of environment "${route.environment}": ${errorMessage(error)}`,
        undefined,
        502,
      );
      response.writeHead(502, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(status));
    });
    response.on('close', () => {
      if (!response.writableFinished) upstream.destroy();
    });
    request.on('error', () => upstream.destroy());
    request.pipe(upstream);
  }

  private async handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const route = parseProxyRoute(request.headers.host, request.url ?? '/', this.options.domain);
    let decision: Decision;
    try {
      if (!route) throw new ProxyError('NotFound', 404, 'no environment port here');
      decision = await this.options.admission.decide(request, route, true);
      if (decision.kind !== 'forward') throw new ProxyError('InternalError', 500, 'unexpected redirect on an upgrade');
    } catch (error) {
      const answer = this.refuse(request, error);
      socket.end(rawResponse(answer.code, answer.headers, answer.body));
      return;
    }
    this.options.onActivity(decision.environment.metadata.id);
    const upstream = httpRequest({
      ...(await this.options.targets.httpConnection(decision.network, route.port, true)),
      port: route.port,
      method: request.method,
      path: withoutQueryParameter(route.path, PORT_TOKEN_PARAMETER),
      headers: this.forwardHeaders(request, route, decision.cookieRest, true),
    });
    upstream.on('upgrade', (answer, upstreamSocket, upstreamHead) => {
      this.upgraded.add(socket);
      this.upgraded.add(upstreamSocket);
      const lines = [`HTTP/1.1 ${answer.statusCode ?? 101} ${answer.statusMessage ?? 'Switching Protocols'}`];
      for (let index = 0; index + 1 < answer.rawHeaders.length; index += 2)
        lines.push(`${answer.rawHeaders[index]}: ${answer.rawHeaders[index + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      (socket as Socket).setNoDelay?.(true);
      // A loopback-only port's connection is a helper's stdio, not a socket.
      (upstreamSocket as Partial<Socket>).setNoDelay?.(true);
      const done = () => {
        this.upgraded.delete(socket);
        this.upgraded.delete(upstreamSocket);
        socket.destroy();
        upstreamSocket.destroy();
      };
      pipeline(upstreamSocket, socket, done);
      pipeline(socket, upstreamSocket, done);
    });
    upstream.on('response', (answer) => {
      // The app declined the upgrade: pass its answer through and close.
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(answer.headers))
        if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
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

  /** Request headers for the app: hop-by-hop and Warren's cookie removed, X-Forwarded-* added. */
  private forwardHeaders(
    request: IncomingMessage,
    route: ProxyRoute,
    cookieRest: string | undefined,
    upgrade: boolean,
  ): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    const named = connectionTokens(request.headers);
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || name === 'cookie') continue;
      headers[name] = value;
    }
    if (cookieRest !== undefined) headers['cookie'] = cookieRest;
    const remote = this.clientAddresses.get(request.socket) ?? request.socket.remoteAddress ?? '';
    const prior = request.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${remote}` : remote;
    headers['x-forwarded-host'] = request.headers.host ?? '';
    headers['x-forwarded-proto'] = this.options.proto;
    if (route.prefix) headers['x-forwarded-prefix'] = route.prefix;
    if (upgrade) {
      headers['connection'] = 'Upgrade';
      headers['upgrade'] = request.headers.upgrade ?? 'websocket';
    }
    return headers;
  }

  /** The answer to a refused request: the error's Status as JSON, or as a page for browsers. */
  private refuse(request: IncomingMessage, error: unknown): { code: number; headers: Record<string, string>; body: string } {
    const known = error instanceof WarrenError;
    if (!known) this.options.logger.warn({ url: request.url, error: errorMessage(error) }, 'proxy request failed');
    const status = known
      ? makeStatus(error.reason, error.message, undefined, error.code)
      : makeStatus('InternalError', 'the port proxy failed');
    const wantsHtml = (request.headers.accept ?? '').includes('text/html');
    if (wantsHtml) {
      return {
        code: status.code,
        headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
        body: htmlPage(status.code, status.reason, status.message),
      };
    }
    return {
      code: status.code,
      headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
      body: JSON.stringify(status),
    };
  }
}

/** Header names listed in `Connection` (RFC 9110 §7.6.1): hop-by-hop as well. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  if (!value) return new Set();
  return new Set(
    value
      .split(',')
      .map((token) => token.trim().toLowerCase())
      .filter((token) => token !== ''),
  );
}

/** A whole HTTP/1.1 response that closes the connection, for a socket no `ServerResponse` writes to (upgrades). */
function rawResponse(code: number, headers: Record<string, string>, body: string): string {
  const reason =
    {
      401: 'Unauthorized',
      403: 'Forbidden',
      404: 'Not Found',
      409: 'Conflict',
      500: 'Internal Server Error',
      502: 'Bad Gateway',
      503: 'Service Unavailable',
    }[code] ?? 'Error';
  const lines = [
    `HTTP/1.1 ${code} ${reason}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ];
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
