// Verification of the server-signed port tokens (`?warren-token=`) that the proxy exchanges for its cookie.
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { ACCESS_TOKEN_ISSUER, AccessDeniedError } from '../access/auth.js';

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
 * Builds a verifier for port tokens: JWTs (RFC 7519, EdDSA) signed by the server's key (JWKS at
 * `<server>/api/v1/keys`), `iss` = "warren", `aud` = this runner's id (read at verification time), unexpired,
 * with an `env` claim and an optional integer `port` claim.
 * @param keys a key getter instead of the remote JWKS (tests).
 * @throws {AccessDeniedError} `Unauthorized` for a bad or expired token, `Forbidden` for another runner's.
 */
export function createPortTokenVerifier(options: { server: string; runnerId: () => string; keys?: JWTVerifyGetKey }): PortTokenVerifier {
  const keys = options.keys ?? createRemoteJWKSet(new URL(`${options.server.replace(/\/+$/, '')}/api/v1/keys`));
  return async (token) => {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keys, { issuer: ACCESS_TOKEN_ISSUER, audience: options.runnerId(), algorithms: ['EdDSA'] }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new AccessDeniedError('Unauthorized', 'the port token has expired; run "warren ports open" again', { cause: error });
      if (error instanceof joseErrors.JWTClaimValidationFailed && error.claim === 'aud') {
        throw new AccessDeniedError('Forbidden', 'the port token was issued for another runner', { cause: error });
      }
      throw new AccessDeniedError('Unauthorized', `the port token is not valid: ${(error as Error).message}`, { cause: error });
    }
    const port = payload['port'];
    if (typeof payload['env'] !== 'string' || typeof payload.sub !== 'string' || (port !== undefined && (typeof port !== 'number' || !Number.isInteger(port)))) {
      throw new AccessDeniedError('Unauthorized', 'the port token lacks its env, sub or port claims');
    }
    return { userId: payload.sub, environmentId: payload['env'], port: typeof port === 'number' ? port : 0, expiresAt: payload.exp ?? 0 };
  };
}
