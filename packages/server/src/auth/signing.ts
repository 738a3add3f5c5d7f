// The server's Ed25519 signing key and the one signer of the access and port tokens that runners verify (JWKS).
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import type { ResourceStore } from '../storage/index.js';

/** Settings key under which the signing key pair is kept (JWKs). */
export const SIGNING_KEY_SETTING = 'auth.signingKey';

/** Issuer (`iss`) of access tokens. */
export const ACCESS_TOKEN_ISSUER = 'warren';

interface StoredSigningKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

/** The loaded signing key: `privateKey` signs, `publicJwk` (with `kid`, `alg: EdDSA`, `use: sig`) is published. */
export interface SigningKeys {
  kid: string;
  privateKey: Awaited<ReturnType<typeof importJWK>>;
  publicJwk: JWK;
}

/**
 * Loads the signing key from the store's settings, creating and saving an Ed25519 pair on first start.
 * When several servers start at once on one database, each re-reads after writing so all use the same stored key
 * (last writer wins; a token signed with a lost key fails verification and the client asks again).
 */
export async function loadSigningKeys(store: ResourceStore): Promise<SigningKeys> {
  let stored = await store.getSetting<StoredSigningKey>(SIGNING_KEY_SETTING);
  if (!stored) {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const kid = randomUUID();
    await store.setSetting(SIGNING_KEY_SETTING, {
      kid,
      privateJwk: await exportJWK(privateKey),
      publicJwk: await exportJWK(publicKey),
    } satisfies StoredSigningKey);
    stored = await store.getSetting<StoredSigningKey>(SIGNING_KEY_SETTING);
    if (!stored) throw new Error('the signing key could not be read back after saving it');
  }
  const privateKey = await importJWK(stored.privateJwk, 'EdDSA');
  return {
    kid: stored.kid,
    privateKey,
    publicJwk: { ...stored.publicJwk, kid: stored.kid, alg: 'EdDSA', use: 'sig' },
  };
}

/** The JSON Web Key Set (RFC 7517 §5) served at `GET /api/v1/keys`. */
export function jwks(keys: SigningKeys): { keys: JWK[] } {
  return { keys: [keys.publicJwk] };
}

/** Claims of a server-signed token that a runner verifies: an environment access token or a port token. */
export interface AccessTokenClaims {
  /** Audience (`aud`): the runner that must accept the token. */
  runnerId: string;
  /** Subject (`sub`): the user acting. */
  userId: string;
  /** `env`: the environment the token grants. */
  environmentId: string;
  /**
   * `port`: set for a port token (runner/src/access/auth.ts createPortTokenVerifier), the one port it grants; absent
   * for an access token (createAccessVerifier, same file).
   */
  port?: number;
}

/**
 * Signs a token a runner verifies with the JWKS (JWT, RFC 7519, alg EdDSA, header `kid`, `typ: JWT`): `env` =
 * environment id, `port` (port tokens only), `iss` = "warren", `aud` = runner id, `sub` = user id, `iat`,
 * `exp` = now + `ttlSeconds` (default 300 s). Claims are written in that order; the runner checks `iss`, `aud`,
 * `exp` and `env` and, for port tokens, `sub` and `port` (runner/src/access/auth.ts).
 * @returns the compact JWT and its expiry as RFC 3339 (whole seconds).
 */
export async function signAccessToken(
  keys: SigningKeys,
  claims: AccessTokenClaims,
  options: { ttlSeconds?: number; now?: Date } = {},
): Promise<{ token: string; expiresTime: string }> {
  const nowSeconds = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const expSeconds = nowSeconds + (options.ttlSeconds ?? 300);
  const payload = claims.port === undefined ? { env: claims.environmentId } : { env: claims.environmentId, port: claims.port };
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid, typ: 'JWT' })
    .setIssuer(ACCESS_TOKEN_ISSUER)
    .setAudience(claims.runnerId)
    .setSubject(claims.userId)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(expSeconds)
    .sign(keys.privateKey);
  return { token, expiresTime: new Date(expSeconds * 1000).toISOString() };
}

/**
 * Signs a port token: {@link signAccessToken} with the `port` claim, which the runner's proxy exchanges for its
 * cookie (runner/src/access/auth.ts createPortTokenVerifier).
 * @returns the compact JWT and its expiry (RFC 3339).
 */
export function signPortToken(
  keys: SigningKeys,
  claims: AccessTokenClaims & { port: number },
  options: { ttlSeconds: number; now: Date },
): Promise<{ token: string; expiresTime: string }> {
  return signAccessToken(keys, claims, options);
}
