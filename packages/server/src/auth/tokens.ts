// Bearer tokens: random secrets shown once, stored only as a SHA-256 hash next to their Token object.
import { createHash, randomBytes } from 'node:crypto';
import { TokenStatusSchema, type Token } from '@warren/api';
import type { ResourceStore } from '../storage/index.js';

/** Prefix of personal access token secrets (acts as a user). Prefixes make leaked secrets greppable (GitHub's `ghp_` habit). */
export const PERSONAL_TOKEN_PREFIX = 'wrn_';
/** Prefix of runner token secrets (acts as one runner). */
export const RUNNER_TOKEN_PREFIX = 'wrr_';

/** The kind of principal a token authenticates. */
export type TokenType = 'Personal' | 'Runner';

/**
 * Generates a new token secret: the type's prefix followed by 32 random bytes in base64url (43 chars).
 * @returns e.g. `wrn_Jx3...`; never stored, only its {@link hashTokenSecret} is.
 */
export function generateTokenSecret(type: TokenType): string {
  const prefix = type === 'Runner' ? RUNNER_TOKEN_PREFIX : PERSONAL_TOKEN_PREFIX;
  return prefix + randomBytes(32).toString('base64url');
}

/**
 * Hashes a token secret for storage and lookup.
 * @returns lowercase hex SHA-256 of the UTF-8 secret (64 chars). A plain hash (no salt, no KDF) is enough
 * because secrets carry 256 random bits; it is what GitHub and Kubernetes bootstrap tokens do too.
 */
export function hashTokenSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** What {@link issueToken} needs to mint a token. */
export interface IssueTokenOptions {
  /** Object name (unique among Tokens). */
  name: string;
  /** User id the token belongs to (for Runner tokens: the admin who created it). */
  ownerId: string;
  type: TokenType;
  /** Required for Runner tokens: the runner the token may act as. */
  runnerName?: string;
  /** RFC 3339; the token is refused (401) after this time. */
  expiresTime?: string;
  description?: string;
  labels?: Record<string, string>;
}

/**
 * Creates a Token object and stores its secret's hash.
 * @returns the stored token with `status.secret` set (the only time the secret is ever returned) and the secret.
 * @throws {ConflictError} reason `AlreadyExists` when the token name is taken.
 */
export async function issueToken(store: ResourceStore, options: IssueTokenOptions): Promise<{ token: Token; secret: string }> {
  const secret = generateTokenSecret(options.type);
  const token = await store.create('Token', {
    name: options.name,
    ownerId: options.ownerId,
    labels: options.labels ?? {},
    spec: {
      type: options.type,
      ...(options.runnerName === undefined ? {} : { runnerName: options.runnerName }),
      ...(options.expiresTime === undefined ? {} : { expiresTime: options.expiresTime }),
      ...(options.description === undefined ? {} : { description: options.description }),
    },
    status: TokenStatusSchema.parse({}),
  });
  try {
    await store.setTokenSecretHash(token.metadata.id, hashTokenSecret(secret));
  } catch (error) {
    // A token without a hash can never authenticate; remove it rather than leave a dead object behind.
    await store.delete('Token', token.metadata.id).catch(() => undefined);
    throw error;
  }
  return { token: { ...token, status: { ...token.status, secret } }, secret };
}

/** Returns `token` without `status.secret`, for every response except the one that created it. */
export function redactToken(token: Token): Token {
  if (token.status.secret === undefined) return token;
  const { secret: _secret, ...status } = token.status;
  return { ...token, status };
}
