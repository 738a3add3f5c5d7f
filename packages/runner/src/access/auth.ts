// Verification of the server-issued access tokens (JWT, EdDSA) that clients present to the runner.
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { WarrenError } from '@warren/base';

/** Issuer (`iss`) of access tokens; matches the server's signing.ts. */
export const ACCESS_TOKEN_ISSUER = 'warren';

/** The presented token is missing, malformed, expired, or for another runner/environment. HTTP 401/403. */
export class AccessDeniedError extends WarrenError {
  constructor(reason: 'Unauthorized' | 'Forbidden', message: string, options?: { cause?: unknown }) {
    super(reason, reason === 'Unauthorized' ? 401 : 403, message, options);
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
 * Builds a verifier that checks tokens against the server's JWKS (`GET <server>/api/v1/keys`, RFC 7517),
 * fetched lazily and refreshed when a token names an unknown `kid` (jose's createRemoteJWKSet).
 * A token is accepted when its signature verifies, `iss` = "warren", `aud` = the runner id (read at
 * verification time, since the id is known only after registering), it is not expired, and its `env`
 * claim equals the environment in the request path.
 * @param keys a key getter instead of the remote JWKS (tests).
 * @throws {AccessDeniedError} `Unauthorized` (missing, bad or expired token) or `Forbidden` (other environment or runner).
 */
export function createAccessVerifier(options: { server: string; runnerId: () => string; keys?: JWTVerifyGetKey }): AccessVerifier {
  const keys = options.keys ?? createRemoteJWKSet(new URL(`${options.server.replace(/\/+$/, '')}/api/v1/keys`));
  return async (token, environmentId) => {
    if (!token) throw new AccessDeniedError('Unauthorized', 'an access token is required (Authorization: Bearer or ?token=)');
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keys, { issuer: ACCESS_TOKEN_ISSUER, audience: options.runnerId(), algorithms: ['EdDSA'] }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new AccessDeniedError('Unauthorized', 'the access token has expired; request a new one', { cause: error });
      if (error instanceof joseErrors.JWTClaimValidationFailed && error.claim === 'aud') {
        throw new AccessDeniedError('Forbidden', 'the access token was issued for another runner', { cause: error });
      }
      throw new AccessDeniedError('Unauthorized', `the access token is not valid: ${(error as Error).message}`, { cause: error });
    }
    if (payload.env !== environmentId) throw new AccessDeniedError('Forbidden', `the access token does not grant access to environment ${environmentId}`);
    return { userId: String(payload.sub ?? ''), environmentId, expiresAt: payload.exp ?? 0 };
  };
}
