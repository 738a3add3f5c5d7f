// The runner's access API (node:http + ws): exec over a WebSocket, lifecycle logs and usage stats over HTTP, all
// authorised by a server-issued access token (packages/api/src/access.ts describes the protocol); and the
// runner's Prometheus /metrics (metrics token or loopback; docs/design/0014-telemetry.md).
import { timingSafeEqual } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ExecChannel, ExecStartSchema, type ExecControl, makeStatus } from '@warren/api';
import { type Logger, WarrenError, errorMessage, silentLogger, sleep } from '@warren/base';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { type EnvironmentBackend, EnvironmentNotRunningError, type ExecSession } from '../environment/index.js';
import type { AccessVerifier } from './auth.js';
import { TerminalSessions, type TerminalSessionsOptions, parseTerminalSize } from './terminal.js';

/** Options of {@link startAccessServer}. */
export interface AccessServerOptions {
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  backend: EnvironmentBackend;
  verify: AccessVerifier;
  logger?: Logger;
  /** Milliseconds between checks for appended log data when following (default 200). */
  followIntervalMs?: number;
  /** Called on exec starts, exec stdin and terminal input (activity tracking; activity/reporter.ts). */
  onActivity?: (environmentId: string) => void;
  /** Terminal sessions: grace period after a dropped socket and scrollback size (terminal.ts). */
  terminal?: Pick<TerminalSessionsOptions, 'graceMs' | 'scrollbackBytes'>;
  /** Serves `GET /metrics` (Prometheus); absent: 404. Who may scrape: {@link metricsAllowed}. */
  metrics?: AccessMetricsOptions;
}

/** The `/metrics` route of the access API (docs/design/0014-telemetry.md). */
export interface AccessMetricsOptions {
  /** Renders one scrape (the runner's RunnerMetrics). */
  render(): Promise<{ contentType: string; body: string }>;
  /**
   * Bearer token scrapers must present (`metrics.token` in runner.json). Without one, only clients connecting
   * from a loopback address may scrape: the series name environments and their classes, tenant data that the
   * access API's other clients (users with a grant for one environment) must not read.
   */
  token?: string;
}

/** A listening access server. */
export interface AccessServer {
  /** Base URL, e.g. `http://127.0.0.1:7081` (from the bound address). */
  url: string;
  port: number;
  /** Closes the listener and every open exec (their processes are killed) and log stream. */
  close(): Promise<void>;
}

const PATH = /^\/v1\/environments\/([A-Za-z0-9._-]{1,128})\/(exec|logs|terminal|stats)$/;
/** Frames sent but not yet flushed before stdout/stderr are paused (backpressure). */
const MAX_PENDING_FRAMES = 32;

function tokenOf(request: IncomingMessage, url: URL): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice('Bearer '.length).trim();
  return url.searchParams.get('token') ?? undefined;
}

function statusOf(error: unknown) {
  if (error instanceof WarrenError) return makeStatus(error.reason, error.message, error.causes, error.code);
  return makeStatus('InternalError', errorMessage(error));
}

function sendStatus(response: ServerResponse, error: unknown): void {
  const status = statusOf(error);
  if (response.headersSent) {
    response.end();
    return;
  }
  response.writeHead(status.code, { 'content-type': 'application/json' });
  response.end(JSON.stringify(status));
}

/**
 * Whether a request may read `/metrics`: with a configured `token`, its bearer token must equal it (compared in
 * constant time); without, the peer must be on loopback (127.0.0.0/8, ::1, or their IPv4-mapped form).
 * @throws {WarrenError} `Unauthorized` (401) for a missing or wrong token; `Forbidden` (403) for a remote peer
 *   when no token is configured.
 */
export function metricsAllowed(request: IncomingMessage, token: string | undefined): void {
  if (token !== undefined) {
    const header = request.headers.authorization;
    const given = Buffer.from(header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : '');
    const wanted = Buffer.from(token);
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
      throw new WarrenError('Unauthorized', 401, '/metrics needs the metrics token of runner.json (Authorization: Bearer <token>)');
    }
    return;
  }
  const peer = request.socket.remoteAddress ?? '';
  if (!/^(?:127\.|::1$|::ffff:127\.)/.test(peer)) {
    throw new WarrenError(
      'Forbidden',
      403,
      `/metrics is served to loopback clients only; set metrics.token in runner.json to scrape from ${peer}`,
    );
  }
}

/** Rejects an upgrade with a Status envelope as a plain HTTP response on the raw socket. */
function rejectUpgrade(socket: Duplex, error: unknown): void {
  const status = statusOf(error);
  const body = JSON.stringify(status);
  socket.end(
    `HTTP/1.1 ${status.code} ${status.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Starts the access API on `host:port`:
 * - `GET /v1/environments/{id}/exec` (WebSocket upgrade): the exec protocol of `@warren/api` access.ts;
 * - `GET /v1/environments/{id}/terminal` (WebSocket upgrade): the terminal protocol (TerminalControl), terminal.ts;
 * - `GET /v1/environments/{id}/logs[?follow=true]`: `text/plain` of the lifecycle log; with follow, appended
 *   data is streamed until the client disconnects;
 * - `GET /v1/environments/{id}/stats`: the environment's usage now, `EnvironmentStats` of `@warren/api` (409 when
 *   it has no container here);
 * - `GET /metrics` when `options.metrics` is given: the Prometheus text format ({@link AccessMetricsOptions}).
 * Every error is a Status envelope (401 bad/expired token, 403 other environment, 404 unknown path,
 * 409 environment not running).
 * @throws {Error} (errno, e.g. EADDRINUSE) when the port cannot be bound.
 */
export async function startAccessServer(options: AccessServerOptions): Promise<AccessServer> {
  const logger = (options.logger ?? silentLogger).child({ component: 'access' });
  const { backend, verify } = options;
  const followIntervalMs = options.followIntervalMs ?? 200;
  const closing = new AbortController();
  const sessions = new Set<ExecSession>();
  const onActivity = options.onActivity ?? (() => {});
  const terminals = new TerminalSessions({ backend, logger, onActivity, ...options.terminal });

  const server = createServer((request, response) => {
    void handleHttp(request, response).catch((error: unknown) => sendStatus(response, error));
  });
  const sockets = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });

  async function handleHttp(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://runner');
    if (url.pathname === '/metrics' && options.metrics) {
      if (request.method !== 'GET') throw new WarrenError('MethodNotAllowed', 405, `${request.method} is not allowed on /metrics`);
      metricsAllowed(request, options.metrics.token);
      const page = await options.metrics.render();
      response.writeHead(200, { 'content-type': page.contentType, 'cache-control': 'no-store' });
      response.end(page.body);
      return;
    }
    const match = PATH.exec(url.pathname);
    if (!match || (match[2] !== 'logs' && match[2] !== 'stats')) {
      throw new WarrenError('NotFound', 404, `no route for ${request.method} ${url.pathname}`);
    }
    if (request.method !== 'GET') throw new WarrenError('MethodNotAllowed', 405, `${request.method} is not allowed on ${url.pathname}`);
    const environmentId = match[1]!;
    await verify(tokenOf(request, url), environmentId);
    if (match[2] === 'stats') {
      const stats = await backend.stats?.(environmentId);
      if (!stats) throw new EnvironmentNotRunningError(environmentId);
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      response.end(JSON.stringify(stats));
      return;
    }
    const follow = url.searchParams.get('follow') === 'true';
    const path = backend.lifecycleLogPath(environmentId);
    const stop = new AbortController();
    const abort = () => stop.abort();
    response.on('close', abort);
    closing.signal.addEventListener('abort', abort, { once: true });
    response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    try {
      await streamFile(path, follow, followIntervalMs, stop.signal, (chunk) => response.write(chunk));
    } finally {
      closing.signal.removeEventListener('abort', abort);
      response.end();
    }
  }

  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {});
    const url = new URL(request.url ?? '/', 'http://runner');
    const match = PATH.exec(url.pathname);
    if (match?.[2] === 'terminal') {
      void upgradeTerminal(request, socket, head, url, match[1]!).catch((error: unknown) => rejectUpgrade(socket, error));
      return;
    }
    if (!match || match[2] !== 'exec') {
      rejectUpgrade(socket, new WarrenError('NotFound', 404, `no WebSocket route at ${url.pathname}`));
      return;
    }
    const environmentId = match[1]!;
    const received = performance.now();
    verify(tokenOf(request, url), environmentId).then(
      (claims) =>
        sockets.handleUpgrade(request, socket, head, (websocket) => {
          logger.debug(
            { environmentId, step: 'verify-upgrade', durationMs: Math.round(performance.now() - received) },
            'exec connection accepted',
          );
          const log = logger.child({ environmentId, userId: claims.userId });
          handleExec(websocket, environmentId, log);
        }),
      (error: unknown) => rejectUpgrade(socket, error),
    );
  });

  async function upgradeTerminal(request: IncomingMessage, socket: Duplex, head: Buffer, url: URL, environmentId: string): Promise<void> {
    const claims = await verify(tokenOf(request, url), environmentId);
    const session = url.searchParams.get('session');
    const cols = parseTerminalSize(url.searchParams.get('cols'), 'cols');
    const rows = parseTerminalSize(url.searchParams.get('rows'), 'rows');
    const terminalRequest = {
      environmentId,
      claims,
      ...(session ? { session } : {}),
      ...(cols ? { cols } : {}),
      ...(rows ? { rows } : {}),
    };
    const sessionId = await terminals.prepare(terminalRequest);
    onActivity(environmentId);
    sockets.handleUpgrade(request, socket, head, (websocket) => terminals.attach(websocket, sessionId, terminalRequest));
  }

  function handleExec(websocket: WebSocket, environmentId: string, log: Logger): void {
    onActivity(environmentId);
    let session: ExecSession | undefined;
    let starting = false;
    // stdin that arrives while the process is being started is held until it exists.
    const early: Buffer[] = [];
    let earlyEof = false;
    const sendControl = (control: ExecControl) => {
      if (websocket.readyState === WebSocket.OPEN) websocket.send(JSON.stringify(control));
    };
    const fail = (error: unknown) => {
      const status = statusOf(error);
      sendControl({ type: 'error', reason: status.reason, message: status.message });
      websocket.close(1011, status.reason.slice(0, 100));
    };
    websocket.on('message', (data: RawData, isBinary: boolean) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        if (bytes[0] !== ExecChannel.stdin) return;
        onActivity(environmentId);
        if (!session) early.push(bytes.subarray(1));
        else if (!session.stdin.writableEnded) session.stdin.write(bytes.subarray(1));
        return;
      }
      let message: unknown;
      try {
        message = JSON.parse(bytes.toString('utf8'));
      } catch {
        fail(new WarrenError('BadRequest', 400, 'text frames must be JSON'));
        return;
      }
      const type = (message as { type?: unknown }).type;
      if (!session && !starting) {
        const parsed = ExecStartSchema.safeParse(message);
        if (!parsed.success) {
          fail(
            new WarrenError(
              'BadRequest',
              400,
              `the first frame must be an exec start message: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`,
            ),
          );
          return;
        }
        starting = true;
        const start = parsed.data;
        const requested = performance.now();
        backend
          .exec(
            environmentId,
            {
              argv: start.argv,
              tty: start.tty,
              ...(start.cols ? { cols: start.cols } : {}),
              ...(start.rows ? { rows: start.rows } : {}),
              ...(start.env ? { env: start.env } : {}),
              ...(start.cwd ? { cwd: start.cwd } : {}),
              ...(start.user ? { user: start.user } : {}),
            },
            log,
          )
          .then((started) => {
            session = started;
            sessions.add(started);
            if (websocket.readyState !== WebSocket.OPEN) {
              started.kill();
              return;
            }
            log.info({ argv0: start.argv[0], tty: start.tty, durationMs: Math.round(performance.now() - requested) }, 'exec started');
            started.stdin.on('error', () => {});
            for (const chunk of early.splice(0)) started.stdin.write(chunk);
            if (earlyEof) started.stdin.end();
            pump(started);
          }, fail);
        return;
      }
      if (type === 'stdin-eof') {
        if (session) session.stdin.end();
        else earlyEof = true;
      } else if (type === 'resize') {
        const { cols, rows } = message as { cols?: unknown; rows?: unknown };
        if (typeof cols === 'number' && typeof rows === 'number') session?.resize?.(cols, rows);
      }
    });
    websocket.on('close', () => {
      if (session) {
        session.kill();
        sessions.delete(session);
      }
    });
    websocket.on('error', (error) => log.debug({ error: error.message }, 'exec socket error'));

    function pump(started: ExecSession): void {
      let pending = 0;
      const streams = [
        [started.stdout, ExecChannel.stdout],
        ...(started.stderr ? [[started.stderr, ExecChannel.stderr] as const] : []),
      ] as const;
      const ended = streams.map(
        ([stream, channel]) =>
          new Promise<void>((resolve) => {
            stream.on('data', (chunk: Buffer) => {
              if (websocket.readyState !== WebSocket.OPEN) return;
              pending++;
              if (pending >= MAX_PENDING_FRAMES) for (const [other] of streams) other.pause();
              websocket.send(Buffer.concat([Buffer.of(channel), chunk]), () => {
                pending--;
                if (pending < MAX_PENDING_FRAMES / 2) for (const [other] of streams) other.resume();
              });
            });
            stream.on('end', resolve);
            stream.on('close', resolve);
            stream.on('error', resolve);
          }),
      );
      void Promise.all([started.exit, ...ended]).then(([code]) => {
        sessions.delete(started);
        sendControl({ type: 'exit', code });
        websocket.close(1000);
      }, fail);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url }, 'access API listening');

  return {
    url,
    port: address.port,
    async close() {
      closing.abort();
      terminals.close();
      for (const session of sessions) session.kill();
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Writes the file at `path` through `write`, then, when `follow`, keeps polling for appended bytes
 * (and for the file to appear) until `signal` aborts. A missing file without follow writes nothing.
 */
async function streamFile(
  path: string,
  follow: boolean,
  intervalMs: number,
  signal: AbortSignal,
  write: (chunk: Buffer) => void,
): Promise<void> {
  let offset = 0;
  const buffer = Buffer.alloc(64 * 1024);
  while (!signal.aborted) {
    let size = -1;
    try {
      size = (await stat(path)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (size >= 0 && size < offset) offset = 0; // truncated or replaced: start over
    if (size > offset) {
      const handle = await open(path, 'r');
      try {
        while (offset < size) {
          const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - offset), offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          write(Buffer.from(buffer.subarray(0, bytesRead)));
        }
      } finally {
        await handle.close();
      }
    }
    if (!follow) return;
    await sleep(intervalMs, signal).catch(() => {});
  }
}
