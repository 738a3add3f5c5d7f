// The native front (proxy-front.c, front.ts): its head parser, cookie stripping and X-Forwarded-* must agree byte
// for byte with the Node fast path's (request-head.ts, session.ts, relay.ts rewriteHead), checked on hand-written
// heads and on generated ones; and as a running proxy it forgets its answers when an environment changes, gives
// bind errors the caller can act on, and when it dies the Node proxy takes its address over.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { type IncomingMessage, createServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Environment } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureProxyFront } from './front.js';
import { MAX_HEAD_BYTES, rewriteHead } from './relay.js';
import { HEAD_END, parseRequestHead } from './request-head.js';
import { queryParameter } from './route.js';
import { type PortProxy, TOKEN_PARAMETER, startPortProxy } from './server.js';
import { SESSION_COOKIE, SessionSigner, takeSessionCookies } from './session.js';
import { RawClient } from './testing/raw-client.js';

const REMOTE = '192.0.2.7';

/** What the front should do with `data` (a request head and maybe more), computed with the Node fast path's code. */
function expected(data: Buffer): string {
  const end = data.indexOf(HEAD_END);
  if (end < 0 || end + 4 > MAX_HEAD_BYTES) return 'runner\n';
  const head = parseRequestHead(data, end + 4);
  if (!head) return 'runner\n';
  if (head.host.length === 0 || head.host.length >= 256 || /[^\x21-\x7e]/.test(head.host)) return 'runner\n';
  if (head.target.includes('?') && queryParameter(head.target, TOKEN_PARAMETER) !== undefined) return 'runner\n';
  const session = head.cookie?.includes(SESSION_COOKIE) ? takeSessionCookies(head.cookie) : undefined;
  const values = session?.values ?? [];
  // The front asks only about values a signed cookie can have, and at most 8 of them.
  if (values.length > 8 || values.some((value) => !/^[A-Za-z0-9._-]*$/.test(value))) return 'runner\n';
  const forwarded =
    session !== undefined || head.forwarded
      ? rewriteHead(data, head, { environmentId: '', port: 0, stripCookie: session !== undefined, cookie: session?.rest }, REMOTE, 'https')
      : Buffer.concat([data.subarray(0, head.length - 2), Buffer.from(`x-forwarded-for: ${REMOTE}\r\nx-forwarded-host: ${head.host}\r\nx-forwarded-proto: https\r\n\r\n`, 'latin1')]);
  return `ask ${[head.host, ...values].join(' ')}\n${forwarded.toString('latin1')}`;
}

describe('native front: request heads', () => {
  let binary: string;
  const front = (data: Buffer) => execFileSync(binary, ['--rewrite', REMOTE, 'https'], { input: data }).toString('latin1');

  beforeAll(async () => {
    binary = await ensureProxyFront(await mkdtemp(join(tmpdir(), 'warren-front-test-')));
  });

  it('parses, strips and forwards exactly as the Node fast path on hand-written heads', () => {
    const cases = [
      'GET / HTTP/1.1\r\nHost: 3000-hello.localhost\r\n\r\n',
      'GET /a?b=c HTTP/1.1\r\nHost: 3000-hello.localhost:7082\r\nAccept: */*\r\n\r\nBODY',
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; ${SESSION_COOKIE}=abc.def; b=2\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: h\r\nCookie:  ${SESSION_COOKIE}="abc.def" \r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: ${SESSION_COOKIE}=a.b;${SESSION_COOKIE}=c.d\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: ${SESSION_COOKIE}=a%b\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: x${SESSION_COOKIE}=1; ${SESSION_COOKIE}x=2\r\n\r\n`,
      'GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: \r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: gopher\r\n\r\n',
      'POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello',
      'POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
      'POST / HTTP/1.1\r\nHost: h\r\ncontent_length: 5\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
      'GET / HTTP/1.0\r\nHost: h\r\n\r\n',
      'GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n',
      'GET / HTTP/1.1\r\nHost : h\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n',
      `GET /?${TOKEN_PARAMETER}=x HTTP/1.1\r\nHost: h\r\n\r\n`,
      'GET /?a=1&warren%2dtoken=x HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET /?warren%2Dtoken HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET /?warren-tokens=x&xwarren-token=y&warren+token=z HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET /?warren%zztoken=1&%77arren-token=2 HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nX: caf\xe9\xa0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nCookie: a=\xa0b\xa0; \xa0c=d\r\nCookie2: x\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: ;;${SESSION_COOKIE};=v; ${SESSION_COOKIE} = " q.r " \r\n\r\n`,
      'GET / HTTP/1.1\r\nHost: h\r\n',
      `GET / HTTP/1.1\r\nHost: h\r\nX: ${'y'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`,
    ];
    for (const text of cases) {
      const data = Buffer.from(text, 'latin1');
      expect(front(data), JSON.stringify(text)).toBe(expected(data));
    }
  });

  it('agrees with the Node fast path on 1,500 generated heads (names, values, cookies, targets, framing)', () => {
    const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
    /** Mostly one of `good`, sometimes one of `bad`: each head is plausible with a few things wrong. */
    const draw = <T>(good: readonly T[], bad: readonly T[]): T => (Math.random() < 0.9 ? pick(good) : pick(bad));
    const names = {
      good: ['Accept', 'X-Case-Check', 'Cookie', 'cookie', 'Content-Length', 'Connection', 'X-Forwarded-For', 'x-forwarded-host', 'X-FORWARDED-PROTO', 'Cookie2'],
      bad: ['Host', 'content_length', 'Transfer-Encoding', 'transfer_encoding', 'TE', 'Trailer', 'Upgrade', 'Keep-Alive', 'Proxy-Connection', 'Proxy-Authorization', 'Host ', ' Host', 'Ho\x00st', ''],
    };
    const values = {
      good: ['', 'h', '3000-hello.localhost', '\t12\t', '0', '007', 'keep-alive', 'close', 'keep-alive, close', '10.0.0.1, 10.0.0.2', '\xa0x\xa0', 'caf\xe9', `${SESSION_COOKIE}=v.w`, `a=1; ${SESSION_COOKIE}="x.y"; b=2`, `${SESSION_COOKIE}; ${SESSION_COOKIE}=`, ';;=;', 'x=1;y=2', ` ${SESSION_COOKIE} = a-b_c.d ;z`],
      bad: ['a b', '1234567890123456', 'chunked', 'keep-alive,', 'Upgrade', 'a\x01b', 'a\rb', 'a\nb', `${SESSION_COOKIE}=bad%value`],
    };
    const targets = { good: ['/', '/a/b?c=d', '/?warren-token2=1&warren+token=1', '/?a=%', '/?%77arren-tokens'], bad: [`/?${TOKEN_PARAMETER}=t`, '/?warren%2Dtoken=t', '/?%77arren-token', '*', 'http://h/', '/\x7f', '/a b', ''] };
    const versions = { good: [' HTTP/1.1\r\n'], bad: [' HTTP/1.0\r\n', ' HTTP/1.1\n', ' HTTP/2\r\n', ' http/1.1\r\n'] };
    const methods = { good: ['GET', 'POST', 'PUT', 'DELETE'], bad: ['G(T', '', 'GET '] };
    const hosts = { good: ['3000-hello.localhost', '3000-hello.localhost:7082', 'h', '[::1]:80'], bad: ['', 'a b', '\xa0h', 'h\x7f'] };
    const ends = { good: ['\r\n'], bad: ['\n', '\r\n ', '\r'] };
    const spaces = ['', ' ', '\t', '  '];
    let asked = 0;
    for (let run = 0; run < 1500; run++) {
      let text = `${draw(methods.good, methods.bad)} ${draw(targets.good, targets.bad)}${draw(versions.good, versions.bad)}`;
      const lines = 1 + Math.floor(Math.random() * 5);
      const hostAt = Math.floor(Math.random() * lines);
      for (let line = 0; line < lines; line++) {
        const name = line === hostAt ? 'Host' : draw(names.good, names.bad);
        const value = line === hostAt ? draw(hosts.good, hosts.bad) : draw(values.good, values.bad);
        text += `${name}:${pick(spaces)}${value}${pick(spaces)}${draw(ends.good, ends.bad)}`;
      }
      text += draw(['\r\n'], ['', '\n']);
      text += pick(['', 'BODY', 'GET / HTTP/1.1\r\n\r\n']);
      const data = Buffer.from(text, 'latin1');
      const want = expected(data);
      if (want.startsWith('ask ')) asked++;
      expect(front(data), JSON.stringify(text)).toBe(want);
    }
    // Both outcomes are exercised, not only refusals.
    console.log(`generated heads the front relays: ${asked} of 1500`);
    expect(asked).toBeGreaterThan(100);
  });
});

function environment(id: string, name: string, ports: Environment['spec']['ports'], phase: 'Running' | 'Stopped' = 'Running'): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name, generation: 1, resourceVersion: '1', createdTime: new Date(0).toISOString(), labels: {}, ownerId: 'usr-a' },
    spec: { desiredPhase: 'Running', source: { git: { url: 'https://example.com/r.git' } }, devcontainer: {}, className: 'default', ports, timeouts: { inactivitySeconds: 0 } },
    status: { phase, observedGeneration: 1, conditions: [], ports: [], runnerId: 'run-test' },
  };
}

/** The command names (comm) of this process's children, by pid. */
function childProcesses(): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === process.pid) found.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const children = () => [...childProcesses().values()];
/** The pids of this process's children running the front (comm is cut at 15 characters). */
const frontProcesses = () => [...childProcesses()].filter(([, name]) => name.startsWith('warren-proxy-fr')).map(([pid]) => pid);

describe('native front: a running proxy', () => {
  let app: ReturnType<typeof createServer>;
  let appPort: number;
  let proxy: PortProxy;
  let binDir: string;
  const environments: Environment[] = [];
  const get = (path = '/') => `GET ${path} HTTP/1.1\r\nHost: ${appPort}-hello.localhost\r\nX-Case-Check: 1\r\n\r\n`;

  beforeAll(async () => {
    app = createServer((request: IncomingMessage, response) => response.end(JSON.stringify({ url: request.url, relayedBy: request.socket.remotePort })));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appPort = (app.address() as AddressInfo).port;
    environments.push(environment('env-a', 'hello', [{ port: appPort, visibility: 'Public' }]));
    binDir = await mkdtemp(join(tmpdir(), 'warren-front-test-'));
    proxy = await startPortProxy({
      host: '127.0.0.1',
      port: 0,
      environments: () => environments,
      network: () => Promise.resolve({ address: '127.0.0.1', pid: 0 }),
      verifyToken: () => Promise.reject(new Error('unused')),
      sessions: new SessionSigner(randomBytes(32)),
      nativeFront: { binDir },
    });
    expect(proxy.front).toBe('native');
  });

  afterAll(async () => {
    await proxy?.close();
    app?.closeAllConnections();
    await new Promise((resolve) => app?.close(resolve));
  });

  it('forgets its answers when a port becomes private or the environment stops, and serves again when it is back', async () => {
    const client = await RawClient.open(proxy.port);
    client.send(get());
    expect((await client.response()).status).toBe(200);
    // Private now: the next request on the same connection is refused (within the proxy's change check, 100 ms).
    environments[0] = environment('env-a', 'hello', []);
    await expect.poll(async () => {
      const other = await RawClient.open(proxy.port);
      other.send(get());
      const status = (await other.response()).status;
      other.close();
      return status;
    }).toBe(401);
    client.send(get());
    expect((await client.response()).status).toBe(401);
    client.close();

    environments[0] = environment('env-a', 'hello', [{ port: appPort, visibility: 'Public' }], 'Stopped');
    await expect.poll(async () => {
      const other = await RawClient.open(proxy.port);
      other.send(get());
      const status = (await other.response()).status;
      other.close();
      return status;
    }).toBe(503);

    environments[0] = environment('env-a', 'hello', [{ port: appPort, visibility: 'Public' }]);
    await expect.poll(async () => {
      const other = await RawClient.open(proxy.port);
      other.send(get());
      const status = (await other.response()).status;
      other.close();
      return status;
    }).toBe(200);
  });

  // setns(2) into a network namespace needs CAP_SYS_ADMIN.
  const rootless = process.getuid?.() !== 0 ? 'needs root (setns into a network namespace)' : undefined;
  if (rootless) console.warn(`skipping the native front's loopback-only test: ${rootless}`);
  it.skipIf(rootless !== undefined)('reaches an app bound to loopback only from inside its namespace, with no helper process', async () => {
    const own = await startPortProxy({
      host: '127.0.0.1',
      port: 0,
      environments: () => environments,
      // This process's namespace stands for the environment's; its "veth address" 127.0.0.3 reaches nothing (the
      // app listens on 127.0.0.1 only), so an answer proves the front connected from inside the namespace.
      network: () => Promise.resolve({ address: '127.0.0.3', pid: process.pid }),
      verifyToken: () => Promise.reject(new Error('unused')),
      sessions: new SessionSigner(randomBytes(32)),
      nativeFront: { binDir },
    });
    const client = await RawClient.open(own.port);
    const ports = new Set<number>();
    for (let index = 0; index < 5; index++) {
      client.send(get(`/loop/${index}`));
      const answer = await client.response();
      expect(answer.status).toBe(200);
      const seen = JSON.parse(answer.body.toString('utf8')) as { url: string; relayedBy: number };
      expect(seen.url).toBe(`/loop/${index}`);
      ports.add(seen.relayedBy);
    }
    expect(ports.size).toBe(1); // one app connection for the keep-alive client connection
    expect(children().filter((name) => name === 'nsenter' || name === 'socat')).toEqual([]);
    client.close();
    await own.close();
  });

  it('says EADDRINUSE when the address is taken, so that the runner can pick another port', async () => {
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    await expect(
      startPortProxy({
        host: '127.0.0.1',
        port,
        environments: () => environments,
        network: () => Promise.resolve(undefined),
        verifyToken: () => Promise.reject(new Error('unused')),
        sessions: new SessionSigner(randomBytes(32)),
        nativeFront: { binDir },
      }),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
    taken.close();
  });

  it('when the front dies, the Node proxy takes its address over', async () => {
    const suites = frontProcesses();
    const own = await startPortProxy({
      host: '127.0.0.1',
      port: 0,
      environments: () => environments,
      network: () => Promise.resolve({ address: '127.0.0.1', pid: 0 }),
      verifyToken: () => Promise.reject(new Error('unused')),
      sessions: new SessionSigner(randomBytes(32)),
      nativeFront: { binDir },
    });
    const ours = frontProcesses().filter((pid) => !suites.includes(pid));
    expect(ours).toHaveLength(1);
    const client = await RawClient.open(own.port);
    client.send(get());
    expect((await client.response()).status).toBe(200);
    process.kill(ours[0]!, 'SIGKILL');
    await client.closed;
    await expect.poll(async () => {
      try {
        const other = await RawClient.open(own.port);
        other.send(get());
        const status = (await other.response()).status;
        other.close();
        return status;
      } catch {
        return 0;
      }
    }).toBe(200);
    await own.close();
  });
});
