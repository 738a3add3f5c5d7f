// A strict, small parser of HTTP/1.1 request heads for the proxy's fast path (relay.ts): it answers only for heads
// whose framing is unambiguous (RFC 9112) and says "not sure" for everything else, which then goes to Node's
// own parser (llhttp) on the slow path, so that the fast path can never disagree with an app about where a
// request ends (request smuggling).

/** What the fast path needs of a request head. Strings are latin1 (one char per octet, RFC 9112 §2.2). */
export interface RequestHead {
  /** The request target, origin-form (RFC 9112 §3.2.1): starts with `/`, visible ASCII only. */
  target: string;
  /** The value of the only Host field, without surrounding whitespace (RFC 9112 §3.2). */
  host: string;
  /** The value of the only Cookie field, or undefined when there is none. */
  cookie: string | undefined;
  /** Body length in bytes from the only Content-Length field; 0 without one (RFC 9112 §6.3, rule 7). */
  contentLength: number;
  /** Whether the head has X-Forwarded-For, -Host or -Proto fields (the proxy then rewrites them). */
  forwarded: boolean;
  /** Length of the head in bytes, its final empty line included: the body starts there. */
  length: number;
}

/** The end of a request head: an empty line (RFC 9112 §2.1). */
export const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SLASH = 0x2f;
const VERSION = Buffer.from(' HTTP/1.1\r\n', 'latin1');

/** tchar (RFC 9110 §5.6.2): the octets of a token (method, field name). */
const TCHAR = new Uint8Array(256);
for (const char of "!#$%&'*+-.^_`|~") TCHAR[char.charCodeAt(0)] = 1;
for (let code = 0x30; code <= 0x39; code++) TCHAR[code] = 1;
for (let code = 0x41; code <= 0x5a; code++) TCHAR[code] = 1;
for (let code = 0x61; code <= 0x7a; code++) TCHAR[code] = 1;

/** Octets allowed in a field value (RFC 9110 §5.5): VCHAR, obs-text, SP and HTAB; no CR, LF, NUL or other CTL. */
const FIELD_OCTET = new Uint8Array(256);
for (let code = 0x20; code <= 0xff; code++) FIELD_OCTET[code] = code === 0x7f ? 0 : 1;
FIELD_OCTET[HTAB] = 1;

/**
 * Parses the request head in `data[0, length)`, where `length` is just past the first `\r\n\r\n` in `data`.
 * Accepts only what the fast path can relay byte for byte without doubt:
 * - a request line `method SP origin-form SP HTTP/1.1` (RFC 9112 §3), no leading empty lines (§2.2);
 * - field lines `name ":" OWS value OWS` with a token name directly followed by the colon (§5.1) and no obs-fold
 *   (§5.2), no bare CR or LF and no other control octet in a value (RFC 9110 §5.5);
 * - exactly one Host (§3.2), at most one Cookie, at most one Content-Length made of 1-15 digits (§6.2);
 * - no Transfer-Encoding (§6.1: chunked uploads go to the slow path), nor a field named `content_length` or
 *   `transfer_encoding` (some servers read `_` as `-`);
 * - none of the hop-by-hop fields the slow path removes (RFC 9110 §7.6.1: TE, Trailer, Upgrade, Keep-Alive,
 *   Proxy-Connection, Proxy-Authenticate, Proxy-Authorization), and a Connection field naming only `keep-alive`
 *   or `close` (the relay is one upstream connection per client connection, so those two mean the same there).
 * @returns undefined for anything else (HTTP/1.0, other target forms, upgrades, malformed or ambiguous heads):
 *   the caller hands such a request to Node's HTTP server, which answers or rejects it as before.
 */
export function parseRequestHead(data: Buffer, length: number): RequestHead | undefined {
  let index = 0;
  while (TCHAR[data[index]!] === 1) index++;
  if (index === 0 || data[index] !== SP) return undefined;
  const targetStart = ++index;
  if (data[index] !== SLASH) return undefined;
  for (let octet = data[index]!; octet > SP && octet < 0x7f; octet = data[++index]!);
  const targetEnd = index;
  if (index + VERSION.length > length || data.compare(VERSION, 0, VERSION.length, index, index + VERSION.length) !== 0) return undefined;
  index += VERSION.length;

  let host: string | undefined;
  let hosts = 0;
  let cookie: string | undefined;
  let cookies = 0;
  let contentLength = 0;
  let contentLengths = 0;
  let forwarded = false;
  for (;;) {
    if (data[index] === CR) {
      // The empty line: the first `\r\n\r\n` of the buffer, so it must be the end the caller found.
      if (data[index + 1] === LF && index + 2 === length) break;
      return undefined;
    }
    const nameStart = index;
    while (TCHAR[data[index]!] === 1) index++;
    const nameLength = index - nameStart;
    // No name, whitespace before the colon, or a line starting with whitespace (obs-fold).
    if (nameLength === 0 || data[index] !== COLON) return undefined;
    index++;
    while (data[index] === SP || data[index] === HTAB) index++;
    const valueStart = index;
    let valueEnd = index;
    for (;;) {
      const octet = data[index]!;
      if (octet === CR) break;
      if (FIELD_OCTET[octet] !== 1) return undefined;
      index++;
      if (octet !== SP && octet !== HTAB) valueEnd = index;
    }
    if (data[index + 1] !== LF) return undefined;
    index += 2;

    switch (nameLength) {
      case 2: // te
        if (nameIs(data, nameStart, 'te')) return undefined;
        break;
      case 4:
        if (nameIs(data, nameStart, 'host')) {
          hosts++;
          host = data.toString('latin1', valueStart, valueEnd);
        }
        break;
      case 6:
        if (nameIs(data, nameStart, 'cookie')) {
          cookies++;
          cookie = data.toString('latin1', valueStart, valueEnd);
        }
        break;
      case 7: // trailer, upgrade
        if (nameIs(data, nameStart, 'trailer') || nameIs(data, nameStart, 'upgrade')) return undefined;
        break;
      case 10:
        if (nameIs(data, nameStart, 'keep-alive')) return undefined;
        if (nameIs(data, nameStart, 'connection') && !persistenceOnly(data, valueStart, valueEnd)) return undefined;
        break;
      case 14:
        if (nameIs(data, nameStart, 'content-length', true)) {
          const digits = valueEnd - valueStart;
          if (++contentLengths > 1 || digits === 0 || digits > 15) return undefined;
          for (let at = valueStart; at < valueEnd; at++) {
            const digit = data[at]! - 0x30;
            if (digit < 0 || digit > 9) return undefined;
            contentLength = contentLength * 10 + digit;
          }
        }
        break;
      case 15:
        if (nameIs(data, nameStart, 'x-forwarded-for')) forwarded = true;
        break;
      case 16:
        if (nameIs(data, nameStart, 'proxy-connection')) return undefined;
        if (nameIs(data, nameStart, 'x-forwarded-host')) forwarded = true;
        break;
      case 17:
        if (nameIs(data, nameStart, 'transfer-encoding', true)) return undefined;
        if (nameIs(data, nameStart, 'x-forwarded-proto')) forwarded = true;
        break;
      case 18:
        if (nameIs(data, nameStart, 'proxy-authenticate')) return undefined;
        break;
      case 19:
        if (nameIs(data, nameStart, 'proxy-authorization')) return undefined;
        break;
      default:
        break;
    }
  }
  if (hosts !== 1 || cookies > 1 || host === undefined) return undefined;
  return { target: data.toString('latin1', targetStart, targetEnd), host, cookie, contentLength, forwarded, length };
}

/**
 * Whether the field name at `data[start, start + name.length)` is `name` (lower case), ignoring ASCII case;
 * with `underscore`, `_` in the data also matches `-` in `name`.
 */
function nameIs(data: Buffer, start: number, name: string, underscore = false): boolean {
  for (let offset = 0; offset < name.length; offset++) {
    let octet = data[start + offset]!;
    if (octet >= 0x41 && octet <= 0x5a) octet |= 0x20;
    else if (underscore && octet === 0x5f) octet = 0x2d;
    if (octet !== name.charCodeAt(offset)) return false;
  }
  return true;
}

/** Whether a Connection value (RFC 9110 §7.6.1) lists only `keep-alive` and `close` (any case, comma-separated). */
function persistenceOnly(data: Buffer, start: number, end: number): boolean {
  const tokens = data.toString('latin1', start, end).toLowerCase().split(',');
  for (const token of tokens) {
    const trimmed = token.trim();
    if (trimmed !== 'keep-alive' && trimmed !== 'close') return false;
  }
  return true;
}
