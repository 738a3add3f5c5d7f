// The port proxy's own auth cookie: after a token exchange, the browser holds an HMAC-signed session value
// naming user, environment and port, so later requests (and WebSocket upgrades) need no token.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Name of the proxy's cookie; stripped from every request before it reaches the app. */
export const SESSION_COOKIE = 'warren_proxy_session';

/** What a session grants: `port` 0 means every port of the environment. */
export interface ProxySession {
  userId: string;
  environmentId: string;
  port: number;
  /** Expiry, seconds since the epoch. */
  expiresAt: number;
}

/**
 * Signs and verifies session values: `base64url(JSON) "." base64url(HMAC-SHA256(secret, JSON))`.
 * The secret is per runner; sessions die with it (a new secret logs every browser out).
 */
export class SessionSigner {
  constructor(private readonly secret: Buffer) {}

  /**
   * Loads the secret from `file` (32 random bytes, created with mode 0600 when missing), so sessions survive
   * a runner restart.
   */
  static async fromFile(file: string): Promise<SessionSigner> {
    try {
      const stored = await readFile(file);
      if (stored.length >= 32) return new SessionSigner(stored);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const secret = randomBytes(32);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, secret, { mode: 0o600 });
    return new SessionSigner(secret);
  }

  /** The cookie value for `session`. */
  sign(session: ProxySession): string {
    const payload = Buffer.from(
      JSON.stringify({ u: session.userId, e: session.environmentId, p: session.port, x: session.expiresAt }),
    ).toString('base64url');
    return `${payload}.${this.mac(payload)}`;
  }

  /** The session in `value`, or undefined when the value is malformed, forged or expired at `nowSeconds`. */
  verify(value: string, nowSeconds: number): ProxySession | undefined {
    const [payload, mac] = value.split('.');
    if (!payload || !mac) return undefined;
    const expected = Buffer.from(this.mac(payload));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    try {
      const parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
        u?: unknown;
        e?: unknown;
        p?: unknown;
        x?: unknown;
      };
      if (typeof parsed.u !== 'string' || typeof parsed.e !== 'string' || typeof parsed.p !== 'number' || typeof parsed.x !== 'number')
        return undefined;
      if (parsed.x <= nowSeconds) return undefined;
      return { userId: parsed.u, environmentId: parsed.e, port: parsed.p, expiresAt: parsed.x };
    } catch {
      return undefined;
    }
  }

  private mac(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }
}

/**
 * Splits a Cookie header (RFC 6265 §5.4: `name=value; name=value`) into the values of the proxy's cookie and
 * the header without it (undefined when nothing else is left), so that the app never sees Warren's cookie.
 */
export function takeSessionCookies(header: string | undefined): { values: string[]; rest: string | undefined } {
  if (!header) return { values: [], rest: undefined };
  const values: string[] = [];
  const kept: string[] = [];
  for (const pair of header.split(';')) {
    const trimmed = pair.trim();
    if (trimmed === '') continue;
    const equals = trimmed.indexOf('=');
    const name = equals < 0 ? trimmed : trimmed.slice(0, equals).trim();
    if (name === SESSION_COOKIE)
      values.push(
        equals < 0
          ? ''
          : trimmed
              .slice(equals + 1)
              .trim()
              .replace(/^"(.*)"$/, '$1'),
      );
    else kept.push(trimmed);
  }
  return { values, rest: kept.length > 0 ? kept.join('; ') : undefined };
}

/**
 * The Set-Cookie header value (RFC 6265 §4.1) for a session: HttpOnly, SameSite=Lax, host-only (no Domain,
 * so other `<port>-<env>` hosts never receive it), limited to `path`, expiring with the session.
 */
export function sessionSetCookie(value: string, path: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=${path}; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}
