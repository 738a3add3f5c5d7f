// The port proxy's fast path (relay.ts) in-process against a real app on loopback, with raw client sockets:
// keep-alive and pipelined requests relayed on one upstream connection, Warren's cookie stripped from every request,
// auth re-checked on every request, bodies by Content-Length, and everything else (chunked uploads, malformed heads,
// upgrades, refusals, an app that is down) handed to the slow path with the same answers as before. The app tells
// the paths apart: the fast path forwards the client's header bytes (their case kept), the slow path re-serialises.
// One suite per front: relay.test.ts runs it on the Node relay (unit tier), native-front.integration.test.ts on the
// native front, which needs cc.
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import { type AddressInfo, type Socket, createServer as createNetServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Environment } from '@warren/api';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PortProxy } from './server.js';
import { type Answer, RawClient } from './testing/raw-client.js';
import { SESSION_COOKIE, SessionSigner } from './session.js';
import { createPortTokenVerifier } from '../access/index.js';
import { RUNNER_ID, closeProxyAndApp, environment, frontOption, loopbackNetwork, startTestProxy } from './testing/proxy.js';

/** Size of the large response of the backpressure test: more than the kernel buffers of two loopback connections. */
const BIG_BYTES = 64 * 1024 * 1024;

/** What the app saw of one request. */
interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: string;
  /** The port of the connection the request came on (one per upstream connection). */
  upstreamPort: number;
}

const json = (answer: Answer) => JSON.parse(answer.body.toString('utf8')) as Seen;
/** Whether the app got the client's own header bytes (fast path) rather than Node's re-serialised ones. */
const relayed = (seen: Seen) => seen.rawHeaders.includes('X-Case-Check');

/**
 * Registers the fast path suite for one front: `node` (the Node relay, relay.ts) or `native` (proxy-front.c, front.ts;
 * compiled with cc into the tests' cache, testing/front-bin.ts). Every case holds for both.
 */
export function relaySuite(front: 'node' | 'native'): void {
  describe(`port proxy fast path (${front} front)`, () => {
    let app: ReturnType<typeof createServer>;
    let appPort: number;
    let downPort: number;
    let proxy: PortProxy;
    const sessions = new SessionSigner(randomBytes(32));
    const seen: Seen[] = [];
    const activity: string[] = [];
    let bigFinished = false;
    /** The app's open connections. */
    const appConnections = new Set<Socket>();
    const environments: Environment[] = [];
    const addresses: Record<string, string> = {
      'env-own': '127.0.0.1',
      'env-pub': '127.0.0.1',
      'env-pub2': '127.0.0.2',
      'env-down': '127.0.0.1',
    };
    const cookieFor = (environmentId: string) =>
      `${SESSION_COOKIE}=${sessions.sign({ userId: 'usr-a', environmentId, port: 0, expiresAt: Math.floor(Date.now() / 1000) + 3600 })}`;
    const host = (name: string, port = appPort) => `Host: ${port}-${name}.localhost:${proxy.port}\r\n`;
    const get = (name: string, path = '/', extra = '') => `GET ${path} HTTP/1.1\r\n${host(name)}X-Case-Check: yes\r\n${extra}\r\n`;

    beforeAll(async () => {
      // A lenient parser (bare LF, both Content-Length and Transfer-Encoding, ...), as some apps have: anything the
      // fast path forwarded by mistake could smuggle a request through it.
      app = createServer({ insecureHTTPParser: true }, (request: IncomingMessage, response: ServerResponse) => {
        if (request.url === '/big') {
          // A large answer written with backpressure: it finishes only as fast as the client reads.
          response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG_BYTES) });
          const chunk = Buffer.alloc(64 * 1024, 0x61);
          let written = 0;
          const write = () => {
            while (written < BIG_BYTES) {
              written += chunk.length;
              if (!response.write(chunk)) return void response.once('drain', write);
            }
            response.end(() => (bigFinished = true));
          };
          write();
          return;
        }
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          const entry: Seen = {
            method: request.method ?? '',
            url: request.url ?? '',
            headers: request.headers,
            rawHeaders: request.rawHeaders,
            body: Buffer.concat(chunks).toString('latin1'),
            upstreamPort: request.socket.remotePort ?? 0,
          };
          seen.push(entry);
          const body = JSON.stringify(entry);
          response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          response.end(body);
        });
      });
      app.on('connection', (socket: Socket) => {
        appConnections.add(socket);
        socket.on('close', () => appConnections.delete(socket));
      });
      const sockets = new WebSocketServer({ server: app });
      sockets.on('connection', (socket, request) => socket.send(JSON.stringify({ cookie: request.headers.cookie ?? null })));
      await new Promise<void>((resolve) => app.listen(0, '0.0.0.0', resolve));
      appPort = (app.address() as AddressInfo).port;
      // A port nothing listens on.
      const probe = createNetServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      downPort = (probe.address() as AddressInfo).port;
      await new Promise((resolve) => probe.close(resolve));

      environments.push(
        environment('env-own', 'own', 'usr-a'),
        environment('env-pub', 'pub', 'usr-a', { publicPorts: [appPort] }),
        environment('env-pub2', 'pub2', 'usr-a', { publicPorts: [appPort] }),
        environment('env-down', 'down', 'usr-a', { publicPorts: [downPort] }),
      );
      proxy = await startTestProxy(environments, {
        network: loopbackNetwork(addresses),
        verifyToken: createPortTokenVerifier({
          server: 'http://unused',
          runnerId: () => RUNNER_ID,
          keys: () => Promise.reject(new Error('no keys in this test')),
        }),
        sessions,
        onActivity: (id) => activity.push(id),
        ...frontOption(front),
      });
      expect(proxy.front).toBe(front);
    });

    afterAll(() => closeProxyAndApp(proxy, app));

    it('relays many keep-alive requests on one upstream connection, with X-Forwarded-* and activity per request', async () => {
      const client = await RawClient.open(proxy.port);
      const before = activity.length;
      const ports = new Set<number>();
      for (let index = 0; index < 50; index++) {
        client.send(get('pub', `/n/${index}`));
        const answer = await client.response();
        expect(answer.status).toBe(200);
        const request = json(answer);
        expect(request.url).toBe(`/n/${index}`);
        expect(relayed(request)).toBe(true);
        expect(request.headers['x-forwarded-for']).toBe('127.0.0.1');
        expect(request.headers['x-forwarded-host']).toBe(`${appPort}-pub.localhost:${proxy.port}`);
        expect(request.headers['x-forwarded-proto']).toBe('http');
        ports.add(request.upstreamPort);
      }
      expect(ports.size).toBe(1);
      // The Node relay reports every request; the native front at most once per second per environment (the runner
      // batches to 30 s anyway).
      if (front === 'node') expect(activity.slice(before)).toEqual(Array.from({ length: 50 }, () => 'env-pub'));
      else expect(new Set(activity.slice(before))).toEqual(new Set(['env-pub']));
      client.close();
    });

    it('relays pipelined requests in order, and a POST body by its Content-Length', async () => {
      const client = await RawClient.open(proxy.port);
      const body = 'hello=world&x=1';
      client.send(
        `POST /form HTTP/1.1\r\n${host('pub')}X-Case-Check: yes\r\nContent-Length: ${body.length}\r\n\r\n${body}${get('pub', '/after')}`,
      );
      const first = json(await client.response());
      expect(first).toMatchObject({ method: 'POST', url: '/form', body });
      expect(relayed(first)).toBe(true);
      const second = json(await client.response());
      expect(second).toMatchObject({ method: 'GET', url: '/after', body: '' });
      expect(second.upstreamPort).toBe(first.upstreamPort);

      // A body that arrives in pieces, the head split too.
      const parts = [`PUT /slow HTTP/1.1\r\n${host('pub')}X-Case`, `-Check: yes\r\nContent-Length: 10\r\n\r\n01234`, '56789'];
      for (const part of parts) {
        client.send(part);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(json(await client.response())).toMatchObject({ method: 'PUT', url: '/slow', body: '0123456789' });
      client.close();
    });

    it("strips Warren's cookie from every request of a connection and keeps the others", async () => {
      const client = await RawClient.open(proxy.port);
      const cookie = cookieFor('env-own');
      for (let index = 0; index < 20; index++) {
        client.send(get('own', `/c/${index}`, `Cookie: theirs=keep; ${cookie}; other=2\r\n`));
        const answer = await client.response();
        expect(answer.status).toBe(200);
        const request = json(answer);
        expect(relayed(request)).toBe(true);
        expect(request.headers.cookie).toBe('theirs=keep; other=2');
        expect(JSON.stringify(request)).not.toContain(SESSION_COOKIE);
      }
      // Only Warren's cookie: the field goes; a client's X-Forwarded-For is extended, its -Host replaced.
      client.send(get('own', '/only', `cookie: ${cookie}\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil.example\r\n`));
      const request = json(await client.response());
      expect(request.headers.cookie).toBeUndefined();
      expect(request.headers['x-forwarded-for']).toBe('10.0.0.1, 127.0.0.1');
      expect(request.headers['x-forwarded-host']).toBe(`${appPort}-own.localhost:${proxy.port}`);
      expect(JSON.stringify(request)).not.toContain(SESSION_COOKIE);
      client.close();
    });

    it('re-checks auth on every request: one without the cookie mid-connection gets the 401, the next one works again', async () => {
      const client = await RawClient.open(proxy.port);
      const cookie = `Cookie: ${cookieFor('env-own')}\r\n`;
      client.send(get('own', '/1', cookie));
      expect(relayed(json(await client.response()))).toBe(true);
      client.send(get('own', '/2'));
      const refused = await client.response();
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.body.toString('utf8'))).toMatchObject({ kind: 'Status', reason: 'Unauthorized' });
      expect(seen.some((request) => request.url === '/2')).toBe(false);
      // The connection now belongs to the slow path, which still strips the cookie.
      client.send(get('own', '/3', cookie));
      const third = json(await client.response());
      expect(third.url).toBe('/3');
      expect(third.headers.cookie).toBeUndefined();
      client.close();

      // A forged cookie, and a cookie of another environment, are refused on the first request too.
      const other = await RawClient.open(proxy.port);
      other.send(get('own', '/4', `Cookie: ${cookieFor('env-pub')}\r\n`));
      expect((await other.response()).status).toBe(401);
      other.close();
    });

    it('hands a request for another Host mid-connection to the slow path, which routes it', async () => {
      const client = await RawClient.open(proxy.port);
      client.send(get('pub', '/first'));
      expect(relayed(json(await client.response()))).toBe(true);
      client.send(get('pub2', '/second'));
      const second = json(await client.response());
      expect(second.url).toBe('/second');
      expect(second.headers['x-forwarded-host']).toBe(`${appPort}-pub2.localhost:${proxy.port}`);
      expect(second.headers['x-forwarded-for']).toBe('127.0.0.1');
      // The native front hands the connection to the Node proxy, whose relay starts afresh with the new Host.
      expect(relayed(second)).toBe(front === 'native');
      client.close();
    });

    it('hands chunked uploads, HTTP/1.0 and the path form to the slow path', async () => {
      const chunked = await RawClient.open(proxy.port);
      chunked.send(`POST /chunked HTTP/1.1\r\n${host('pub')}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`);
      const upload = json(await chunked.response());
      expect(upload).toMatchObject({ url: '/chunked', body: 'hello world' });
      chunked.close();

      const old = await RawClient.open(proxy.port);
      old.send(`GET /old HTTP/1.0\r\n${host('pub')}\r\n`);
      expect(json(await old.response()).url).toBe('/old');
      old.close();

      const pathForm = await RawClient.open(proxy.port);
      pathForm.send(`GET /p/pub/${appPort}/x HTTP/1.1\r\nHost: 127.0.0.1:${proxy.port}\r\n\r\n`);
      expect(json(await pathForm.response()).url).toBe('/x');
      pathForm.close();
    });

    it('never lets a malformed or ambiguous head smuggle a request to the app', async () => {
      const smuggled = `GET /smuggled HTTP/1.1\r\n${host('pub')}\r\n`;
      // CL.TE: a proxy that framed by Content-Length would send the smuggled request as body, which the app reads as
      // a request after the chunked body's end.
      const chunkedThenSmuggled = `0\r\n\r\n${smuggled}`;
      const attacks = [
        `POST / HTTP/1.1\r\n${host('pub')}Content-Length: ${chunkedThenSmuggled.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedThenSmuggled}`,
        `POST / HTTP/1.1\r\n${host('pub')}X-A: 1\nTransfer-Encoding: chunked\r\nContent-Length: ${chunkedThenSmuggled.length}\r\n\r\n${chunkedThenSmuggled}`,
        `POST / HTTP/1.1\r\n${host('pub')}Transfer_Encoding: chunked\r\nContent-Length: ${chunkedThenSmuggled.length}\r\n\r\n${chunkedThenSmuggled}`,
        `POST / HTTP/1.1\r\n${host('pub')}Content-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
        `POST / HTTP/1.1\r\n${host('pub')}X-A: 1\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
        `POST / HTTP/1.1\r\n${host('pub')}Content-Length : ${smuggled.length}\r\n\r\n${smuggled}`,
        `POST / HTTP/1.1\r\n${host('pub')}X-A: 1\r\n Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
        `GET / HTTP/1.1\r\n${host('pub')}${host('pub')}\r\n`,
      ];
      for (const attack of attacks) {
        const client = await RawClient.open(proxy.port);
        client.send(attack);
        // Either an answer (the slow path's own reading of the head) or a closed connection, never a smuggled request.
        await Promise.race([client.closed, new Promise((resolve) => setTimeout(resolve, 300))]);
        client.close();
      }
      expect(seen.some((request) => request.url === '/smuggled')).toBe(false);
    });

    it('passes a WebSocket upgrade after relayed requests on the same connection, still authenticated', async () => {
      const client = await RawClient.open(proxy.port);
      const cookie = cookieFor('env-own');
      client.send(get('own', '/before', `Cookie: ${cookie}\r\n`));
      expect(relayed(json(await client.response()))).toBe(true);
      const key = randomBytes(16).toString('base64');
      client.send(
        `GET /ws HTTP/1.1\r\n${host('own')}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nCookie: ${cookie}; mine=1\r\n\r\n`,
      );
      const switched = await client.response();
      expect(switched.status).toBe(101);
      // The app's first message, an unmasked text frame (RFC 6455 §5.2) shorter than 126 bytes.
      const [opcode, length] = await client.bytes(2);
      expect(opcode).toBe(0x81);
      expect(JSON.parse((await client.bytes(length!)).toString('utf8'))).toEqual({ cookie: 'mine=1' });
      client.close();

      const refused = await RawClient.open(proxy.port);
      refused.send(
        `GET /ws HTTP/1.1\r\n${host('own')}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
      );
      expect((await refused.response()).status).toBe(401);
      refused.close();
    });

    it('answers 502 when nothing listens on the port, and keeps serving', async () => {
      const client = await RawClient.open(proxy.port);
      client.send(`GET / HTTP/1.1\r\n${host('down', downPort)}\r\n`);
      const answer = await client.response();
      expect(answer.status).toBe(502);
      expect(JSON.parse(answer.body.toString('utf8'))).toMatchObject({
        kind: 'Status',
        reason: 'ServiceUnavailable',
        message: expect.stringContaining(`nothing answered on port ${downPort}`) as unknown,
      });
      client.close();
      const after = await RawClient.open(proxy.port);
      after.send(get('pub', '/alive'));
      expect((await after.response()).status).toBe(200);
      after.close();
    });

    it('holds a large response while the client does not read (backpressure), then delivers all of it', async () => {
      bigFinished = false;
      const client = await RawClient.open(proxy.port);
      client.socket.pause();
      client.send(get('pub', '/big'));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(bigFinished).toBe(false);
      client.socket.resume();
      const answer = await client.response();
      expect(answer.status).toBe(200);
      expect(answer.body.length).toBe(BIG_BYTES);
      await expect.poll(() => bigFinished).toBe(true);
      client.close();
    });

    it('ends the client when the app closes, passes a half-close on, and leaves no upstream connection behind', async () => {
      // Connection: close reaches the app, which closes after answering; the client is ended in turn.
      const closing = await RawClient.open(proxy.port);
      closing.send(get('pub', '/close', 'Connection: close\r\n'));
      expect((await closing.response()).status).toBe(200);
      await closing.closed;

      // The client ends its side right after the request: the answer still arrives.
      const halfClosed = await RawClient.open(proxy.port);
      halfClosed.send(get('pub', '/half'));
      halfClosed.socket.end();
      expect(json(await halfClosed.response()).url).toBe('/half');
      await halfClosed.closed;

      // A client that goes away mid-connection takes its upstream connection with it.
      const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.open(proxy.port)));
      for (const client of clients) client.send(get('pub', '/held'));
      const upstreamPorts = new Set<number>();
      for (const client of clients) upstreamPorts.add(json(await client.response()).upstreamPort);
      expect(upstreamPorts.size).toBe(5);
      const stillOpen = () => [...appConnections].filter((socket) => upstreamPorts.has(socket.remotePort ?? 0)).length;
      expect(stillOpen()).toBe(5);
      for (const client of clients) client.close();
      await expect.poll(stillOpen).toBe(0);
    });

    it('ends relayed connections when the proxy closes', async () => {
      const own = await startTestProxy(environments, { network: loopbackNetwork(addresses), sessions, ...frontOption(front) });
      const client = await RawClient.open(own.port);
      client.send(`GET / HTTP/1.1\r\nHost: ${appPort}-pub.localhost\r\n\r\n`);
      expect((await client.response()).status).toBe(200);
      await own.close();
      await client.closed;
    });
  });
}
