// The fast path's request head parser: what it accepts, and that it says "not sure" (undefined) for every head whose
// framing or routing is unusual or ambiguous (RFC 9112), so that those go to Node's parser on the slow path.
import { describe, expect, it } from 'vitest';
import { HEAD_END, parseRequestHead } from './request-head.js';

/** Parses `text` (latin1) up to its first empty line, as the relay does. */
function parse(text: string) {
  const data = Buffer.from(text, 'latin1');
  const end = data.indexOf(HEAD_END);
  expect(end).toBeGreaterThan(0);
  return parseRequestHead(data, end + HEAD_END.length);
}

describe('parseRequestHead', () => {
  it('parses a plain request: target, Host, Cookie, Content-Length, head length', () => {
    const text =
      'POST /a/b?c=d HTTP/1.1\r\nHost:  3000-env.localhost:7082 \r\nCookie: a=1; b=2\r\ncontent-length: 11\r\nAccept: */*\r\n\r\nhello world';
    expect(parse(text)).toEqual({
      target: '/a/b?c=d',
      host: '3000-env.localhost:7082',
      cookie: 'a=1; b=2',
      contentLength: 11,
      forwarded: false,
      length: text.length - 'hello world'.length,
    });
  });

  it('defaults to no body and no cookie; accepts Connection keep-alive/close and obs-text in values', () => {
    expect(parse('GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\nX-Name: caf\u00e9\r\n\r\n')).toMatchObject({
      contentLength: 0,
      cookie: undefined,
    });
    expect(parse('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')).toBeDefined();
    expect(parse('GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n')).toBeDefined();
  });

  it('notes X-Forwarded-For, -Host and -Proto (the proxy rewrites them)', () => {
    for (const name of ['X-Forwarded-For', 'x-forwarded-host', 'X-FORWARDED-PROTO']) {
      expect(parse(`GET / HTTP/1.1\r\nHost: h\r\n${name}: x\r\n\r\n`)?.forwarded).toBe(true);
    }
    expect(parse('GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Prefix: /p\r\n\r\n')?.forwarded).toBe(false);
  });

  it.each([
    ['HTTP/1.0', 'GET / HTTP/1.0\r\nHost: h\r\n\r\n'],
    ['HTTP/2 prior knowledge', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['absolute-form target', 'GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['authority-form (CONNECT)', 'CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['asterisk-form', 'OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['a leading empty line', '\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['two spaces in the request line', 'GET  / HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['a non-ASCII target', 'GET /caf\u00e9 HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['no Host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: h\r\nhost: other\r\n\r\n'],
    ['two Cookie fields', 'GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n'],
    ['Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['Transfer-Encoding with Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['Transfer_Encoding', 'POST / HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n'],
    ['two Content-Lengths', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n'],
    ['Content_Length beside Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent_Length: 30\r\n\r\n'],
    ['a Content-Length list', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n'],
    ['a signed Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n'],
    ['an empty Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n'],
    ['a 16-digit Content-Length', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456\r\n\r\n'],
    ['whitespace before the colon', 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 3\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n'],
    ['a bare LF in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n'],
    ['a bare CR in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\rX-B: 2\r\n\r\n'],
    ['a NUL in a value', 'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\u00002\r\n\r\n'],
    ['a line without a colon', 'GET / HTTP/1.1\r\nHost: h\r\nnonsense\r\n\r\n'],
    ['a non-token field name', 'GET / HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n'],
    ['Upgrade', 'GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'],
    ['Connection naming a field', 'GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\n\r\n'],
    ['TE', 'GET / HTTP/1.1\r\nHost: h\r\nTE: trailers\r\n\r\n'],
    ['Trailer', 'GET / HTTP/1.1\r\nHost: h\r\nTrailer: X-A\r\n\r\n'],
    ['Keep-Alive', 'GET / HTTP/1.1\r\nHost: h\r\nKeep-Alive: timeout=5\r\n\r\n'],
    ['Proxy-Connection', 'GET / HTTP/1.1\r\nHost: h\r\nProxy-Connection: keep-alive\r\n\r\n'],
    ['Proxy-Authorization', 'GET / HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic eA==\r\n\r\n'],
    ['Proxy-Authenticate', 'GET / HTTP/1.1\r\nHost: h\r\nProxy-Authenticate: Basic\r\n\r\n'],
  ])('is not sure of %s', (_name, text) => {
    expect(parse(text)).toBeUndefined();
  });

  it('never reads past the end it is given', () => {
    // The request line is cut short right before the empty line: no room for " HTTP/1.1".
    expect(parse('GET /abc\r\n\r\n')).toBeUndefined();
    expect(parse('GET / HTTP/1.1\r\n\r\n')).toBeUndefined();
  });
});
