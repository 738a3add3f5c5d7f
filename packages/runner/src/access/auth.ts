// Verification of the server-signed tokens presented to the runner (JWT, EdDSA): access tokens for the access API
// and SSH, and port tokens (`?warren-token=`) that the port proxy exchanges for its cookie. One check for both.
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { WarrenError } from '@warren/base';

/** Issuer (`iss`) of access and port tokens; matches the server's signing.ts. */
export const ACCESS_TOKEN_ISSUER = 'warren';

/** The presented token is missing, malformed, expired, or for another runner/environment. HTTP 401/403. */
export class AccessDeniedError extends WarrenError {
  constructor(reason: 'Unauthorized' | 'Forbidden', message: string, options?: { cause?: unknown }) {
    super(reason, reason === 'Unauthorized' ? 401 : 403, message, options);
  }
}

/** Where a verifier gets the server's public keys. */
export interface TokenKeysOptions {
  /** Server base URL: keys are the JWKS at `<server>/api/v1/keys` (RFC 7517). */
  server: string;
  /** This runner's id, the tokens' audience; read at verification time (known only after registering). */
  runnerId: () => string;
  /** A key getter instead of the remote JWKS (tests). */
  keys?: JWTVerifyGetKey;
}

/** The kind of token, as error messages name it, and what a user does to get a new one. */
interface TokenKind {
  name: 'access token' | 'port token';
  renew: string;
}

const ACCESS_TOKEN: TokenKind = { name: 'access token', renew: 'request a new one' };
const PORT_TOKEN: TokenKind = { name: 'port token', renew: 'run "warren ports open" again' };

/**
 * The server's JWKS, fetched lazily and refreshed when a token names an unknown `kid` (jose's createRemoteJWKSet).
 */
function serverKeys(options: TokenKeysOptions): JWTVerifyGetKey {
  return options.keys ?? createRemoteJWKSet(new URL(`${options.server.replace(/\/+$/, '')}/api/v1/keys`));
}

/**
 * Checks a server-signed token: its EdDSA signature by the server's keys, `iss` = "warren", `aud` = `runnerId()`,
 * and not expired (RFC 7519 §4.1).
 * @returns its payload, whose other claims the caller checks.
 * @throws {AccessDeniedError} `Unauthorized` for a bad or expired token, `Forbidden` for another runner's.
 */
async function verifyServerToken(token: string, keys: JWTVerifyGetKey, runnerId: () => string, kind: TokenKind): Promise<JWTPayload> {
  try {
    const { payload } = await jwtVerify(token, keys, { issuer: ACCESS_TOKEN_ISSUER, audience: runnerId(), algorithms: ['EdDSA'] });
    return payload;
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired)
      throw new AccessDeniedError('Unauthorized', `the ${kind.name} has expired; ${kind.renew}`, { cause: error });
    if (error instanceof joseErrors.JWTClaimValidationFailed && error.claim === 'aud') {
      throw new AccessDeniedError('Forbidden', `the ${kind.name} was issued for another runner`, { cause: error });
    }
    throw new AccessDeniedError('Unauthorized', `the ${kind.name} is not valid: ${(error as Error).message}`, { cause: error });
  }
}

/** The verified claims of an access token. */
export interface AccessClaims {
  /** `sub`: the user acting. */
  userId: string;
  /** `env`: the environment the token grants access to. */
  environmentId: string;
  /** `exp` as seconds since the epoch. */
  expiresAt: number;
}

/** Checks a token for one environment; see {@link createAccessVerifier}. */
export type AccessVerifier = (token: string | undefined, environmentId: string) => Promise<AccessClaims>;

/**
 * Builds a verifier for access tokens: accepted when the token passes the server-token check (signature by the
 * server's JWKS, `iss` = "warren", `aud` = the runner id, unexpired) and its `env` claim equals the environment in
 * the request path.
 * @throws {AccessDeniedError} `Unauthorized` (missing, bad or expired token) or `Forbidden` (other environment or runner).
 */
export function createAccessVerifier(options: TokenKeysOptions): AccessVerifier {
  const keys = serverKeys(options);
  return async (token, environmentId) => {
    if (!token) throw new AccessDeniedError('Unauthorized', 'an access token is required (Authorization: Bearer or ?token=)');
    const payload = await verifyServerToken(token, keys, options.runnerId, ACCESS_TOKEN);
    if (payload['env'] !== environmentId)
      throw new AccessDeniedError('Forbidden', `the access token does not grant access to environment ${environmentId}`);
    return { userId: String(payload.sub ?? ''), environmentId, expiresAt: payload.exp ?? 0 };
  };
}

/** The verified claims of a port token. */
export interface PortTokenClaims {
  /** `sub`: the user the server issued it to (the environment's owner or an admin). */
  userId: string;
  /** `env`: the environment id it grants. */
  environmentId: string;
  /** `port`: the port it grants; 0 (claim absent) grants every port of the environment. */
  port: number;
  /** `exp`, seconds since the epoch. */
  expiresAt: number;
}

/** Checks a port token; see {@link createPortTokenVerifier}. */
export type PortTokenVerifier = (token: string) => Promise<PortTokenClaims>;

/**
 * Builds a verifier for port tokens: accepted when the token passes the server-token check (as
 * {@link createAccessVerifier}) and has an `env` and a `sub` claim and an optional integer `port` claim.
 * @throws {AccessDeniedError} `Unauthorized` for a bad or expired token, `Forbidden` for another runner's.
 */
export function createPortTokenVerifier(options: TokenKeysOptions): PortTokenVerifier {
  const keys = serverKeys(options);
  return async (token) => {
    const payload = await verifyServerToken(token, keys, options.runnerId, PORT_TOKEN);
    const port = payload['port'];
    if (
      typeof payload['env'] !== 'string' ||
      typeof payload.sub !== 'string' ||
      (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port)))
    ) {
      throw new AccessDeniedError('Unauthorized', 'the port token lacks its env, sub or port claims');
    }
    return { userId: payload.sub, environmentId: payload['env'], port: typeof port === 'number' ? port : 0, expiresAt: payload.exp ?? 0 };
  };
}
