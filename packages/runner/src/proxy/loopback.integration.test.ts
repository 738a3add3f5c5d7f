// The port proxy's fast path to an app bound to loopback only, through the real helper (nsenter + socat, joining
// this process's own network namespace): one helper per client connection, reused by its keep-alive requests and
// killed when the client goes; an app that stopped listening answers the slow path's 502; WebSocket upgrades still
// take the slow path. Needs root (nsenter), nsenter(1) and socat(1).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Environment } from '@warren/api';
import type { Logger } from '@warren/base';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PortProxy } from './server.js';
import { closeProxyAndApp, environment, startTestProxy } from './testing/proxy.js';
import { type Answer, RawClient } from './testing/raw-client.js';

function missingTools(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (nsenter into a network namespace)';
  for (const tool of ['nsenter', 'socat']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `needs ${tool}`;
    }
  }
  return undefined;
}
const skipReason = missingTools();
if (skipReason !== undefined) console.warn(`skipping loopback fast path tests: ${skipReason}`);

/** The helper processes (nsenter, which execs socat) this process started and that still run. */
function helpers(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces, so parse after its closing parenthesis.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const [state, ppid] = stat.slice(close + 2).split(' ');
    if (Number(ppid) === process.pid && state !== 'Z' && (comm === 'socat' || comm === 'nsenter')) found.push(Number(entry));
  }
  return found;
}

/** A logger that keeps every record's message and fields. */
function recordingLogger(records: { message: string; fields: Record<string, unknown> }[]): Logger {
  const logger: Logger = {
    debug: (fields, message) => void records.push({ message, fields }),
    info: (fields, message) => void records.push({ message, fields }),
    warn: (fields, message) => void records.push({ message, fields }),
    error: (fields, message) => void records.push({ message, fields }),
    child: () => logger,
  };
  return logger;
}

/** What the app saw of one request. */
interface Seen {
  url: string;
  rawHeaders: string[];
  /** The port of the connection the request came on: one per helper. */
  upstreamPort: number;
  bodyBytes: number;
}

/** Size of the large request and response bodies: more than the pipe and socket buffers on the way. */
const BIG_BYTES = 8 * 1024 * 1024;

describe.skipIf(skipReason !== undefined)('port proxy fast path to a loopback-only app (nsenter + socat)', () => {
  let app: ReturnType<typeof createServer>;
  let appPort: number;
  let proxy: PortProxy;
  const appConnections = new Set<Socket>();
  const environments: Environment[] = [];
  const records: { message: string; fields: Record<string, unknown> }[] = [];
  /** Helpers that exited so far (exec.ts spawnLogged logs each exit with its argv). */
  const helpersExited = () =>
    records.filter((record) => record.message === 'process exited' && (record.fields.argv as string[])[0] === 'nsenter').length;
  const host = (port = appPort) => `Host: ${port}-loop.localhost\r\n`;
  const get = (path: string, port = appPort, extra = '') => `GET ${path} HTTP/1.1\r\n${host(port)}X-Case-Check: yes\r\n${extra}\r\n`;
  const json = (answer: Answer) => JSON.parse(answer.body.toString('utf8')) as Seen;

  /** An app on 127.0.0.1 only (as Vite and many dev servers bind by default), with a WebSocket endpoint. */
  async function startApp(): Promise<{ server: ReturnType<typeof createServer>; port: number }> {
    const server = createServer((request: IncomingMessage, response: ServerResponse) => {
      if (request.url === '/big') {
        response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG_BYTES) });
        response.end(Buffer.alloc(BIG_BYTES, 0x61));
        return;
      }
      let bodyBytes = 0;
      request.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
      request.on('end', () => {
        const body = JSON.stringify({
          url: request.url,
          rawHeaders: request.rawHeaders,
          upstreamPort: request.socket.remotePort,
          bodyBytes,
        });
        response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
    });
    server.on('connection', (socket: Socket) => {
      appConnections.add(socket);
      socket.on('close', () => appConnections.delete(socket));
    });
    new WebSocketServer({ server }).on('connection', (socket) => socket.send('hello from loopback'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { server, port: (server.address() as AddressInfo).port };
  }

  beforeAll(async () => {
    ({ server: app, port: appPort } = await startApp());
    environments.push(environment('env-loop', 'loop', 'usr-a', { publicPorts: [appPort] }));
    proxy = await startTestProxy(environments, {
      // Our own namespace stands for the environment's; its "veth address" reaches nothing, so an answer proves
      // the request went through the helper.
      network: () => Promise.resolve({ address: '127.0.0.3', pid: process.pid }),
      logger: recordingLogger(records),
    });
  });

  afterAll(() => closeProxyAndApp(proxy, app));

  it('relays keep-alive requests through one helper per client connection, and kills it when the client goes', async () => {
    const before = helpers().length;
    const exitedBefore = helpersExited();
    const client = await RawClient.open(proxy.port);
    const ports = new Set<number>();
    for (let index = 0; index < 30; index++) {
      client.send(get(`/module/${index}.js`));
      const answer = await client.response();
      expect(answer.status).toBe(200);
      const seen = json(answer);
      expect(seen.url).toBe(`/module/${index}.js`);
      // The client's own header bytes: the fast path, not the slow one.
      expect(seen.rawHeaders).toContain('X-Case-Check');
      ports.add(seen.upstreamPort);
    }
    expect(ports.size).toBe(1);
    expect(helpers().length - before).toBe(1);

    // A second client gets its own helper.
    const second = await RawClient.open(proxy.port);
    second.send(get('/second'));
    const other = json(await second.response());
    expect(ports.has(other.upstreamPort)).toBe(false);
    expect(helpers().length - before).toBe(2);

    client.close();
    second.close();
    await expect.poll(() => helpers().length).toBe(before);
    // Two helpers in all, for 31 requests.
    await expect.poll(() => helpersExited() - exitedBefore).toBe(2);
    await expect
      .poll(
        () => [...appConnections].filter((socket) => socket.remotePort === other.upstreamPort || ports.has(socket.remotePort ?? 0)).length,
      )
      .toBe(0);
  });

  it('relays large bodies both ways through the helper, holding the answer while the client does not read', async () => {
    const client = await RawClient.open(proxy.port);
    const body = Buffer.alloc(BIG_BYTES, 0x62);
    client.socket.write(
      Buffer.concat([Buffer.from(`POST /upload HTTP/1.1\r\n${host()}Content-Length: ${BIG_BYTES}\r\n\r\n`, 'latin1'), body]),
    );
    expect(json(await client.response()).bodyBytes).toBe(BIG_BYTES);
    client.socket.pause();
    client.send(get('/big'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    client.socket.resume();
    const answer = await client.response();
    expect(answer.status).toBe(200);
    expect(Buffer.byteLength(answer.body)).toBe(BIG_BYTES);
    client.close();
    await expect.poll(() => helpers().length).toBe(0);
  });

  it('passes a half-close on and leaves no helper behind', async () => {
    const before = helpers().length;
    const client = await RawClient.open(proxy.port);
    client.send(get('/half'));
    client.socket.end();
    expect(json(await client.response()).url).toBe('/half');
    await client.closed;
    await expect.poll(() => helpers().length).toBe(before);
  });

  it('ends the client when the app closes the connection (Connection: close)', async () => {
    const client = await RawClient.open(proxy.port);
    client.send(get('/close', appPort, 'Connection: close\r\n'));
    expect((await client.response()).status).toBe(200);
    await client.closed;
    await expect.poll(() => helpers().length).toBe(0);
  });

  it('reuses helper connections on the slow path too (its keep-alive pool), and kills them when the proxy closes', async () => {
    const own = await startTestProxy(environments, { network: () => Promise.resolve({ address: '127.0.0.3', pid: process.pid }) });
    const ports = new Set<number>();
    // Each request on a pooled helper connection sets and clears its timeout callback: none may pile up.
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    // The path form always takes the slow path; each request on its own client connection.
    for (let index = 0; index < 15; index++) {
      const client = await RawClient.open(own.port);
      client.send(`GET /p/loop/${appPort}/slow/${index} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Case-Check: yes\r\n\r\n`);
      const seen = json(await client.response());
      expect(seen.url).toBe(`/slow/${index}`);
      expect(seen.rawHeaders).not.toContain('X-Case-Check'); // re-serialised: the slow path
      ports.add(seen.upstreamPort);
      client.close();
    }
    process.off('warning', onWarning);
    expect(warnings).not.toContain('MaxListenersExceededWarning');
    // One app connection, so one helper, for all the requests; it stays in the pool until the proxy closes.
    expect(ports.size).toBe(1);
    expect(helpers().length).toBe(1);
    await own.close();
    await expect.poll(() => helpers().length).toBe(0);
  });

  it('passes WebSocket upgrades (slow path)', async () => {
    const client = await RawClient.open(proxy.port);
    const key = randomBytes(16).toString('base64');
    client.send(
      `GET /ws HTTP/1.1\r\n${host()}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
    );
    expect((await client.response()).status).toBe(101);
    client.close();
    await expect.poll(() => helpers().length).toBe(0);
  });

  it('answers 502 when the app stopped listening, and leaves no helper behind', async () => {
    const { server, port } = await startApp();
    environments.push(environment('env-gone', 'gone', 'usr-a', { publicPorts: [port] }));
    const first = await RawClient.open(proxy.port);
    first.send(`GET / HTTP/1.1\r\nHost: ${port}-gone.localhost\r\n\r\n`);
    expect((await first.response()).status).toBe(200);
    first.close();
    // The proxy still knows the port as loopback-only (its cache lasts a second): the helper finds nothing.
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    const failedBefore = records.filter((record) => record.message === 'proxy fast path connect failed').length;
    const client = await RawClient.open(proxy.port);
    client.send(`GET / HTTP/1.1\r\nHost: ${port}-gone.localhost\r\n\r\n`);
    const answer = await client.response();
    expect(answer.status).toBe(502);
    // The fast path tried its helper first, then handed the request to the slow path, whose page this is.
    expect(records.filter((record) => record.message === 'proxy fast path connect failed').length).toBe(failedBefore + 1);
    expect(JSON.parse(answer.body.toString('utf8'))).toMatchObject({
      kind: 'Status',
      reason: 'ServiceUnavailable',
      message: expect.stringContaining(`nothing answered on port ${port}`) as unknown,
    });
    client.close();
    await expect.poll(() => helpers().length).toBe(0);
  });

  it('kills the helpers of open connections when the proxy closes', async () => {
    const own = await startTestProxy(environments, { network: () => Promise.resolve({ address: '127.0.0.3', pid: process.pid }) });
    const client = await RawClient.open(own.port);
    client.send(get('/held'));
    expect((await client.response()).status).toBe(200);
    expect(helpers().length).toBe(1);
    await own.close();
    await client.closed;
    await expect.poll(() => helpers().length).toBe(0);
  });
});
