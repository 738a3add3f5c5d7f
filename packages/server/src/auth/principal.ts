// Who is calling: resolves a bearer token to a principal (a user or a runner).
import { WarrenError } from '@warren/base';
import type { ResourceStore } from '../storage/index.js';
import { hashTokenSecret } from './tokens.js';

/** A person acting through a personal access token. `admin` users see and manage everything. */
export interface UserPrincipal {
  kind: 'User';
  userId: string;
  name: string;
  admin: boolean;
  tokenId: string;
}

/**
 * A runner acting through a runner token. It may act only on the Runner named `runnerName` and on
 * the environments scheduled to that runner. `runnerId` is undefined until the runner has registered.
 */
export interface RunnerPrincipal {
  kind: 'Runner';
  runnerName: string;
  runnerId: string | undefined;
  /** The admin who created the token; owner of the Runner object when the runner registers itself. */
  ownerId: string;
  tokenId: string;
}

/** An authenticated caller. */
export type Principal = UserPrincipal | RunnerPrincipal;

/** The request carries no usable credentials (missing, unknown, expired or orphaned token). HTTP 401. */
export class UnauthorizedError extends WarrenError {
  constructor(message: string) {
    super('Unauthorized', 401, message);
  }
}

/** The principal is known but may not do this. HTTP 403. */
export class ForbiddenError extends WarrenError {
  constructor(message: string) {
    super('Forbidden', 403, message);
  }
}

/** Options of {@link authenticate}. */
export interface AuthenticateOptions {
  /** Clock, for expiry checks and `lastUsedTime` (tests). Defaults to `new Date()`. */
  now?: Date;
  /** Minimum age in seconds of `status.lastUsedTime` before it is rewritten (default 60): batches writes. */
  lastUsedUpdateSeconds?: number;
  /** Called when recording `lastUsedTime` fails; the request still proceeds. */
  onLastUsedError?: (error: unknown) => void;
}

/**
 * Resolves an `Authorization` header value to a principal.
 * @returns undefined when `header` is absent (anonymous).
 * @throws {UnauthorizedError} when the header is not `Bearer <secret>`, the secret is unknown, the token has
 * expired (`spec.expiresTime` in the past), its owning user no longer exists, or a Runner token has no runnerName.
 * Scheme per RFC 6750 §2.1 (case-insensitive "Bearer").
 */
export async function authenticate(
  store: ResourceStore,
  header: string | undefined,
  options: AuthenticateOptions = {},
): Promise<Principal | undefined> {
  if (header === undefined || header === '') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw new UnauthorizedError('the Authorization header must be "Bearer <token>"');
  const secret = match[1]!;
  const token = await store.findTokenBySecretHash(hashTokenSecret(secret));
  if (!token) throw new UnauthorizedError('the token is not valid');
  const now = options.now ?? new Date();
  if (token.spec.expiresTime !== undefined && Date.parse(token.spec.expiresTime) <= now.getTime()) {
    throw new UnauthorizedError(`the token "${token.metadata.name}" expired at ${token.spec.expiresTime}`);
  }
  await touchToken(store, token.metadata.id, token.status.lastUsedTime, now, options);
  const owner = await store.get('User', token.metadata.ownerId);
  if (!owner) throw new UnauthorizedError(`the owner of token "${token.metadata.name}" no longer exists`);
  if (token.spec.type === 'Runner') {
    const runnerName = token.spec.runnerName;
    if (runnerName === undefined) throw new UnauthorizedError(`runner token "${token.metadata.name}" names no runner`);
    const runners = await store.getByName('Runner', runnerName);
    return { kind: 'Runner', runnerName, runnerId: runners[0]?.metadata.id, ownerId: owner.metadata.id, tokenId: token.metadata.id };
  }
  return { kind: 'User', userId: owner.metadata.id, name: owner.metadata.name, admin: owner.spec.admin, tokenId: token.metadata.id };
}

/** Records `status.lastUsedTime`, at most once per `lastUsedUpdateSeconds`, so every request does not write. */
async function touchToken(
  store: ResourceStore,
  tokenId: string,
  lastUsedTime: string | undefined,
  now: Date,
  options: AuthenticateOptions,
): Promise<void> {
  const minAgeMs = (options.lastUsedUpdateSeconds ?? 60) * 1000;
  if (lastUsedTime !== undefined && now.getTime() - Date.parse(lastUsedTime) < minAgeMs) return;
  try {
    await store.update('Token', tokenId, (current) => {
      const previous = current.status.lastUsedTime;
      if (previous !== undefined && now.getTime() - Date.parse(previous) < minAgeMs) return undefined;
      return { ...current, status: { ...current.status, lastUsedTime: now.toISOString() } };
    });
  } catch (error) {
    options.onLastUsedError?.(error);
  }
}
