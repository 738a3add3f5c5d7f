// The native front (proxy-front.c, front.ts): its head parser, cookie stripping and X-Forwarded-* must agree byte
// for byte with the Node fast path's (request-head.ts, session.ts, relay.ts rewriteHead), checked on hand-written
// heads and on generated ones (the front's `--rewrite` mode). The running front: front.integration.test.ts.
// Needs cc (the front is compiled on first use).
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureProxyFront } from './front.js';
import { MAX_HEAD_BYTES, rewriteHead } from './relay.js';
import { HEAD_END, parseRequestHead } from './request-head.js';
import { queryParameter } from './route.js';
import { TOKEN_PARAMETER } from './server.js';
import { SESSION_COOKIE, takeSessionCookies } from './session.js';
import { TEST_FRONT_BIN_DIR } from './testing/front-bin.js';

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
  // The Cookie field's other pairs are rejoined with "; ", which can be longer than the field: past 16 KiB, the runner.
  if ((session?.rest?.length ?? 0) > 16384) return 'runner\n';
  // The front asks only about values a signed cookie can have, and at most 8 of them.
  if (values.length > 8 || values.some((value) => !/^[A-Za-z0-9._-]*$/.test(value))) return 'runner\n';
  const forwarded =
    session !== undefined || head.forwarded
      ? rewriteHead(data, head, { environmentId: '', port: 0, stripCookie: session !== undefined, cookie: session?.rest }, REMOTE, 'https')
      : Buffer.concat([
          data.subarray(0, head.length - 2),
          Buffer.from(`x-forwarded-for: ${REMOTE}\r\nx-forwarded-host: ${head.host}\r\nx-forwarded-proto: https\r\n\r\n`, 'latin1'),
        ]);
  return `ask ${[head.host, ...values].join(' ')}\n${forwarded.toString('latin1')}`;
}

describe('native front: request heads', () => {
  let binary: string;
  const front = (data: Buffer) => execFileSync(binary, ['--rewrite', REMOTE, 'https'], { input: data }).toString('latin1');

  beforeAll(async () => {
    binary = await ensureProxyFront(TEST_FRONT_BIN_DIR);
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
      'GET /??warren-token=T HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET /?x=1&?warren-token=T HTTP/1.1\r\nHost: h\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: ${SESSION_COOKIE}=a.b;${'a;'.repeat(7000)}\r\n\r\n`,
      `GET / HTTP/1.1\r\nHost: h\r\nCookie: ${SESSION_COOKIE}=a.b;${'a;'.repeat(5400)}\r\n\r\n`,
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
      good: [
        'Accept',
        'X-Case-Check',
        'Cookie',
        'cookie',
        'Content-Length',
        'Connection',
        'X-Forwarded-For',
        'x-forwarded-host',
        'X-FORWARDED-PROTO',
        'Cookie2',
      ],
      bad: [
        'Host',
        'content_length',
        'Transfer-Encoding',
        'transfer_encoding',
        'TE',
        'Trailer',
        'Upgrade',
        'Keep-Alive',
        'Proxy-Connection',
        'Proxy-Authorization',
        'Host ',
        ' Host',
        'Ho\x00st',
        '',
      ],
    };
    const values = {
      good: [
        '',
        'h',
        '3000-hello.localhost',
        '\t12\t',
        '0',
        '007',
        'keep-alive',
        'close',
        'keep-alive, close',
        '10.0.0.1, 10.0.0.2',
        '\xa0x\xa0',
        'caf\xe9',
        `${SESSION_COOKIE}=v.w`,
        `a=1; ${SESSION_COOKIE}="x.y"; b=2`,
        `${SESSION_COOKIE}; ${SESSION_COOKIE}=`,
        ';;=;',
        'x=1;y=2',
        ` ${SESSION_COOKIE} = a-b_c.d ;z`,
      ],
      bad: ['a b', '1234567890123456', 'chunked', 'keep-alive,', 'Upgrade', 'a\x01b', 'a\rb', 'a\nb', `${SESSION_COOKIE}=bad%value`],
    };
    const targets = {
      good: ['/', '/a/b?c=d', '/?warren-token2=1&warren+token=1', '/?a=%', '/?%77arren-tokens', '/?x&?warren-token=1'],
      bad: [`/?${TOKEN_PARAMETER}=t`, '/?warren%2Dtoken=t', '/?%77arren-token', '/??warren-token=t', '*', 'http://h/', '/\x7f', '/a b', ''],
    };
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
