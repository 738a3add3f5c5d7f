// The port proxy in-process against a real app on loopback: routing (host and path form), the token
// exchange, Owner/Public visibility, users kept apart, Warren's cookie and token never reaching the app,
// WebSocket upgrades and streamed bodies both ways.
// One suite per front: server.test.ts runs it on the Node proxy alone (unit tier), native-front.integration.test.ts
// with the native front, which needs cc.
import { type IncomingMessage, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { WebSocket, WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PortProxy } from './server.js';
import { SESSION_COOKIE } from './session.js';
import { createPortTokenVerifier } from '../access/index.js';
import { RUNNER_ID, closeProxyAndApp, environment, frontOption, loopbackNetwork, startTestProxy } from './testing/proxy.js';

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A plain HTTP request to the proxy (fetch would follow redirects and forbids setting Host). */
function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, method, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * Registers the port proxy suite for one way of serving the address: `node` (the Node proxy alone) or `native` (the
 * native front, proxy-front.c, relaying what it may and handing the rest to the Node proxy; compiled with cc).
 * Every case holds for both.
 */
export function proxySuite(front: 'node' | 'native'): void {
  describe(`port proxy (${front} front)`, () => {
    let app: ReturnType<typeof createServer>;
    let appPort: number;
    let proxy: PortProxy;
    let privateJwk: JWK;
    const activity: string[] = [];
    let releaseStream: () => void = () => {};
    const environments = [
      environment('env-aaaa', 'hello', 'usr-a'),
      environment('env-bbbb', 'hello', 'usr-b'),
      environment('env-pub', 'shared', 'usr-a', { publicPorts: [] }),
      environment('env-off', 'sleepy', 'usr-a', { phase: 'Stopped' }),
    ];
    // Each environment has its own loopback address, so the app can tell which one a request reached.
    const addresses: Record<string, string> = { 'env-aaaa': '127.0.0.1', 'env-bbbb': '127.0.0.2', 'env-pub': '127.0.0.3' };

    const sign = async (claims: { sub: string; env: string; port?: number; aud?: string; expiresIn?: number }) => {
      const key = await importJWK(privateJwk, 'EdDSA');
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ env: claims.env, ...(claims.port === undefined ? {} : { port: claims.port }) })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
        .setIssuer('warren')
        .setAudience(claims.aud ?? RUNNER_ID)
        .setSubject(claims.sub)
        .setIssuedAt(now - 600)
        .setExpirationTime(now + (claims.expiresIn ?? 300))
        .sign(key);
    };
    const host = (env: string) => ({ host: `${appPort}-${env}.localhost:${proxy.port}` });
    /** Exchanges a token for the proxy's cookie; returns `name=value`. */
    const login = async (env: string, token: string): Promise<string> => {
      const answer = await get(proxy.port, `/?warren-token=${token}`, host(env));
      expect(answer.status).toBe(303);
      const cookie = answer.headers['set-cookie']?.[0] ?? '';
      expect(cookie).toMatch(new RegExp(`^${SESSION_COOKIE}=`));
      return cookie.split(';')[0] ?? '';
    };

    beforeAll(async () => {
      const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
      privateJwk = await exportJWK(privateKey);
      const publicJwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA' };
      app = createServer((request, response) => {
        if (request.url?.startsWith('/stream')) {
          // Streams: the first chunk must reach the client before the app ends the body.
          response.writeHead(200, { 'content-type': 'text/plain' });
          response.write('first\n');
          releaseStream = () => response.end('last\n');
          return;
        }
        if (request.url?.startsWith('/upload')) {
          // Echoes the request body as it arrives, chunk by chunk.
          response.writeHead(200, { 'content-type': 'application/octet-stream' });
          request.on('data', (chunk: Buffer) => response.write(chunk));
          request.on('end', () => response.end());
          return;
        }
        response.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'app=1; Path=/' });
        response.end(
          JSON.stringify({ method: request.method, url: request.url, headers: request.headers, localAddress: request.socket.localAddress }),
        );
      });
      const sockets = new WebSocketServer({ server: app });
      sockets.on('connection', (socket, request) => {
        socket.send(JSON.stringify({ cookie: request.headers.cookie ?? null, url: request.url }));
        socket.on('message', (data, binary) => socket.send(data, { binary }));
      });
      await new Promise<void>((resolve) => app.listen(0, '0.0.0.0', resolve));
      appPort = (app.address() as AddressInfo).port;
      environments[2]!.spec.ports = [{ port: appPort, visibility: 'Public' }];
      proxy = await startTestProxy(environments, {
        network: loopbackNetwork(addresses),
        verifyToken: createPortTokenVerifier({
          server: 'http://unused',
          runnerId: () => RUNNER_ID,
          keys: async () => importJWK(publicJwk, 'EdDSA'),
        }),
        onActivity: (id) => activity.push(id),
        ...frontOption(front),
      });
      // The native front must really serve (it would fall back to Node silently when it cannot be compiled).
      expect(proxy.front).toBe(front);
    });

    afterAll(() => closeProxyAndApp(proxy, app));

    it('refuses an Owner port without a cookie: 401 Status JSON, or a page naming `warren ports open` for browsers', async () => {
      const json = await get(proxy.port, '/', host('hello'));
      expect(json.status).toBe(401);
      expect(JSON.parse(json.body)).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
      const page = await get(proxy.port, '/', { ...host('hello'), accept: 'text/html,*/*' });
      expect(page.status).toBe(401);
      expect(page.headers['content-type']).toContain('text/html');
      expect(page.body).toContain(`warren ports open hello ${appPort}`);
    });

    it('exchanges a token for a host-only HttpOnly cookie, redirects without the token, and never forwards either', async () => {
      const token = await sign({ sub: 'usr-a', env: 'env-aaaa', port: appPort });
      const exchange = await get(proxy.port, `/some/path?x=1&warren-token=${token}&y=2`, host('hello'));
      expect(exchange.status).toBe(303);
      expect(exchange.headers.location).toBe('/some/path?x=1&y=2');
      const setCookie = exchange.headers['set-cookie']?.[0] ?? '';
      expect(setCookie).toContain('HttpOnly');
      expect(setCookie).toContain('SameSite=Lax');
      expect(setCookie).toContain('Path=/;');
      expect(setCookie).not.toMatch(/Domain=/i);
      const cookie = setCookie.split(';')[0]!;

      const answer = await get(proxy.port, '/some/path?x=1&y=2', { ...host('hello'), cookie: `theirs=keep; ${cookie}; other=2` });
      expect(answer.status).toBe(200);
      const seen = JSON.parse(answer.body) as { url: string; headers: Record<string, string>; localAddress: string };
      expect(seen.localAddress).toBe('127.0.0.1');
      expect(seen.url).toBe('/some/path?x=1&y=2');
      expect(seen.headers.cookie).toBe('theirs=keep; other=2');
      expect(answer.body).not.toContain(SESSION_COOKIE);
      expect(answer.body).not.toContain(token);
      expect(seen.headers['x-forwarded-host']).toBe(`${appPort}-hello.localhost:${proxy.port}`);
      expect(seen.headers['x-forwarded-proto']).toBe('http');
      expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(answer.headers['set-cookie']).toEqual(['app=1; Path=/']);
      expect(activity).toContain('env-aaaa');

      // A request that also carries a token never forwards it, even with a valid cookie: it is exchanged again.
      const again = await get(proxy.port, `/?warren-token=${token}`, { ...host('hello'), cookie });
      expect(again.status).toBe(303);
    });

    it('serves the path form with the prefix stripped and the cookie limited to /p/<env>/', async () => {
      const token = await sign({ sub: 'usr-a', env: 'env-aaaa' });
      const exchange = await get(proxy.port, `/p/env-aaaa/${appPort}/app/?warren-token=${token}`, { host: `127.0.0.1:${proxy.port}` });
      expect(exchange.status).toBe(303);
      expect(exchange.headers.location).toBe(`/p/env-aaaa/${appPort}/app/`);
      const setCookie = exchange.headers['set-cookie']?.[0] ?? '';
      expect(setCookie).toContain('Path=/p/env-aaaa/;');
      const answer = await get(proxy.port, `/p/env-aaaa/${appPort}/app/?q=1`, {
        host: `127.0.0.1:${proxy.port}`,
        cookie: setCookie.split(';')[0]!,
      });
      expect(answer.status).toBe(200);
      const seen = JSON.parse(answer.body) as { url: string; headers: Record<string, string> };
      expect(seen.url).toBe('/app/?q=1');
      expect(seen.headers['x-forwarded-prefix']).toBe(`/p/env-aaaa/${appPort}`);
    });

    it("keeps users apart: B's token or cookie never reaches A's environment, by name or by id", async () => {
      const tokenB = await sign({ sub: 'usr-b', env: 'env-bbbb' });
      // By id: B's token does not grant env-aaaa.
      expect((await get(proxy.port, `/?warren-token=${tokenB}`, host('env-aaaa'))).status).toBe(403);
      // By the shared name: B's token pins B's environment.
      const cookieB = await login('hello', tokenB);
      const viaName = await get(proxy.port, '/', { ...host('hello'), cookie: cookieB });
      expect(viaName.status).toBe(200);
      expect((JSON.parse(viaName.body) as { localAddress: string }).localAddress).toBe('127.0.0.2');
      // B's cookie on A's id: not authenticated for it.
      expect((await get(proxy.port, '/', { ...host('env-aaaa'), cookie: cookieB })).status).toBe(401);
      // A forged cookie is ignored.
      expect(
        (
          await get(proxy.port, '/', {
            ...host('env-aaaa'),
            cookie: `${SESSION_COOKIE}=eyJ1IjoidXNyLWEiLCJlIjoiZW52LWFhYWEiLCJwIjowLCJ4Ijo5OTk5OTk5OTk5fQ.forged`,
          })
        ).status,
      ).toBe(401);
    });

    it('refuses an expired token, a token for another runner and a token for another port', async () => {
      const expired = await get(
        proxy.port,
        `/?warren-token=${await sign({ sub: 'usr-a', env: 'env-aaaa', expiresIn: -60 })}`,
        host('hello'),
      );
      expect(expired.status).toBe(401);
      expect(JSON.parse(expired.body)).toMatchObject({ reason: 'Unauthorized', message: expect.stringContaining('expired') as unknown });
      expect(
        (await get(proxy.port, `/?warren-token=${await sign({ sub: 'usr-a', env: 'env-aaaa', aud: 'run-other' })}`, host('hello'))).status,
      ).toBe(403);
      expect(
        (await get(proxy.port, `/?warren-token=${await sign({ sub: 'usr-a', env: 'env-aaaa', port: 1 })}`, host('hello'))).status,
      ).toBe(403);
    });

    it('serves a Public port without anything; unknown environments are 404, stopped ones 503', async () => {
      expect((await get(proxy.port, '/', host('shared'))).status).toBe(200);
      expect((await get(proxy.port, '/', host('nope'))).status).toBe(404);
      expect((await get(proxy.port, '/', { host: `70000-hello.localhost` })).status).toBe(404);
      expect((await get(proxy.port, '/', { host: 'localhost' })).status).toBe(404);
      const token = await sign({ sub: 'usr-a', env: 'env-off' });
      const cookie = await login('sleepy', token);
      const stopped = await get(proxy.port, '/', { ...host('sleepy'), cookie });
      expect(stopped.status).toBe(503);
      expect(JSON.parse(stopped.body)).toMatchObject({ reason: 'ServiceUnavailable' });
    });

    it('passes WebSocket upgrades both ways, with the cookie stripped; refuses them without auth', async () => {
      const cookie = await login('hello', await sign({ sub: 'usr-a', env: 'env-aaaa' }));
      const socket = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws?a=1`, { headers: { ...host('hello'), cookie: `${cookie}; mine=1` } });
      const messages: string[] = [];
      const echoed = new Promise<void>((resolve, reject) => {
        socket.on('message', (data: Buffer) => {
          messages.push(data.toString('utf8'));
          if (messages.length === 2) resolve();
        });
        socket.on('error', reject);
      });
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
      socket.send('ping through the proxy');
      await echoed;
      expect(JSON.parse(messages[0]!)).toEqual({ cookie: 'mine=1', url: '/ws?a=1' });
      expect(messages[1]).toBe('ping through the proxy');
      socket.close();

      const refused = new WebSocket(`ws://127.0.0.1:${proxy.port}/ws`, { headers: host('hello') });
      const status = await new Promise<number>((resolve) =>
        refused.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0)),
      );
      expect(status).toBe(401);
    });

    it('streams response and request bodies without buffering them', async () => {
      const cookie = await login('hello', await sign({ sub: 'usr-a', env: 'env-aaaa' }));
      // Response: the first chunk arrives while the app still holds the body open.
      const firstChunk = await new Promise<string>((resolve, reject) => {
        const request = httpRequest(
          { host: '127.0.0.1', port: proxy.port, path: '/stream', headers: { ...host('hello'), cookie } },
          (response) => {
            response.once('data', (chunk: Buffer) => {
              resolve(chunk.toString('utf8'));
              response.resume();
              releaseStream();
            });
          },
        );
        request.on('error', reject);
        request.end();
      });
      expect(firstChunk).toBe('first\n');

      // Request: the app echoes each chunk as it arrives, so the client sees its first chunk before sending the second.
      const echoed = await new Promise<string>((resolve, reject) => {
        const request = httpRequest(
          { host: '127.0.0.1', port: proxy.port, path: '/upload', method: 'POST', headers: { ...host('hello'), cookie } },
          (response) => {
            const parts: string[] = [];
            response.on('data', (chunk: Buffer) => {
              parts.push(chunk.toString('utf8'));
              if (parts.join('') === 'one-') request.end('two');
            });
            response.on('end', () => resolve(parts.join('')));
          },
        );
        request.on('error', reject);
        request.flushHeaders();
        request.write('one-');
      });
      expect(echoed).toBe('one-two');
    });
  });
}
