// SSH routes: each user's registered public keys (`/api/v1/sshkeys`) and the runners' login check
// (`POST /api/v1/ssh/authorize`). The SSH gateway on a runner decides nothing itself: it asks here, with its
// runner token, and gets a short-lived grant signed by the server (issue 4, "Zero trust").
//
// Keys are kept per user in the settings table (`sshKeys/<userId>`), not as a resource kind: a new kind would touch
// every exhaustive switch of the generic routes and the policy table, and keys are small, private to their owner
// and looked up only by owner (the environment's owner during authorize). Writes are read-modify-write without a
// version check: two concurrent adds by one user may lose one (acceptable for a user editing their own keys).
import { createHash, randomUUID } from 'node:crypto';
import { InvalidError, NotFoundError, WarrenError } from '@warren/base';
import { SshAuthorizeRequestSchema, SshKeyCreateSchema, type Environment, type SshGrant, type SshKey } from '@warren/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ForbiddenError, UnauthorizedError, authenticate, signAccessToken, type Principal } from '../auth/index.js';
import type { ResourceStore } from '../storage/index.js';
import { parseOrThrow } from './errors.js';
import { isJsonObject } from './merge-patch.js';
import type { RouteContext } from './routes/index.js';

/** Settings key holding a user's SSH keys. */
export function sshKeysSetting(userId: string): string {
  return `sshKeys/${userId}`;
}

/** An OpenSSH public key line, parsed. */
export interface ParsedPublicKey {
  /** Key type, e.g. `ssh-ed25519`. */
  type: string;
  /** The wire-format key blob (RFC 4253 §6.6). */
  blob: Buffer;
  comment: string;
  /** `SHA256:<base64 without padding>` of the blob, as ssh-keygen(1) -l prints it. */
  fingerprint: string;
  /** `<type> <base64>` without the comment: the canonical form compared and stored. */
  canonical: string;
}

const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

/**
 * Parses one OpenSSH public key line (`<type> <base64> [comment]`, sshd(8) AUTHORIZED_KEYS format, no options).
 * The type named in the line must equal the type string inside the blob (RFC 4253 §6.6).
 * @throws {InvalidError} 422 naming `publicKey` for anything else.
 */
export function parsePublicKey(line: string): ParsedPublicKey {
  const invalid = (message: string) => new InvalidError(`publicKey ${message}`, [{ field: 'publicKey', message }]);
  const parts = line.trim().split(/\s+/);
  const [type, data] = parts;
  if (type === undefined || data === undefined) throw invalid('must be an OpenSSH public key line: "<type> <base64> [comment]"');
  if (!KEY_TYPES.has(type)) throw invalid(`has an unsupported key type "${type}"`);
  if (!/^[A-Za-z0-9+/]+={0,3}$/.test(data)) throw invalid('is not valid base64');
  const blob = Buffer.from(data, 'base64');
  if (blob.length < 4) throw invalid('is too short');
  const length = blob.readUInt32BE(0);
  if (length + 4 > blob.length || blob.subarray(4, 4 + length).toString('latin1') !== type) {
    throw invalid(`does not contain a "${type}" key`);
  }
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { type, blob, comment: parts.slice(2).join(' '), fingerprint, canonical: `${type} ${blob.toString('base64')}` };
}

/** A user's stored keys (empty when none). */
export async function listSshKeys(store: ResourceStore, userId: string): Promise<SshKey[]> {
  return (await store.getSetting<SshKey[]>(sshKeysSetting(userId))) ?? [];
}

function userOf(principal: Principal): Extract<Principal, { kind: 'User' }> {
  if (principal.kind !== 'User') throw new ForbiddenError('runner tokens do not manage SSH keys');
  return principal;
}

/**
 * Registers `GET/POST /api/v1/sshkeys`, `DELETE /api/v1/sshkeys/{id}` (id, name or fingerprint; each user sees and
 * manages only their own keys) and `POST /api/v1/ssh/authorize` (runner tokens only).
 */
export function registerSshRoutes(app: FastifyInstance, context: RouteContext): void {
  const { store } = context;

  app.get('/api/v1/sshkeys', async (request) => {
    const user = userOf(context.principalOf(request));
    const items = await listSshKeys(store, user.userId);
    return { kind: 'SshKeyList', apiVersion: 'v1', items };
  });

  app.post('/api/v1/sshkeys', async (request, reply) => {
    const user = userOf(context.principalOf(request));
    const body = parseOrThrow(SshKeyCreateSchema, request.body, 'SSH key');
    const parsed = parsePublicKey(body.publicKey);
    const keys = await listSshKeys(store, user.userId);
    if (keys.some((key) => key.fingerprint === parsed.fingerprint)) {
      throw new WarrenError('AlreadyExists', 409, `the key ${parsed.fingerprint} is already registered`);
    }
    const name = body.name ?? (parsed.comment || parsed.fingerprint);
    if (keys.some((key) => key.name === name)) throw new WarrenError('AlreadyExists', 409, `an SSH key named "${name}" already exists`);
    const key: SshKey = {
      kind: 'SshKey',
      id: randomUUID(),
      name,
      publicKey: parsed.comment ? `${parsed.canonical} ${parsed.comment}` : parsed.canonical,
      fingerprint: parsed.fingerprint,
      createdTime: context.options.now().toISOString(),
    };
    await store.setSetting(sshKeysSetting(user.userId), [...keys, key]);
    void reply.code(201);
    return key;
  });

  app.delete<{ Params: { id: string } }>('/api/v1/sshkeys/:id', async (request) => {
    const user = userOf(context.principalOf(request));
    const keys = await listSshKeys(store, user.userId);
    const wanted = request.params.id;
    const key =
      keys.find((candidate) => candidate.id === wanted) ??
      keys.find((candidate) => candidate.name === wanted || candidate.fingerprint === wanted);
    if (!key) throw new NotFoundError('SshKey', wanted);
    await store.setSetting(
      sshKeysSetting(user.userId),
      keys.filter((candidate) => candidate.id !== key.id),
    );
    return key;
  });

  app.post('/api/v1/ssh/authorize', async (request: FastifyRequest): Promise<SshGrant> => {
    const principal = context.principalOf(request);
    if (principal.kind !== 'Runner') throw new ForbiddenError('only runners ask for SSH logins');
    const runnerId = principal.runnerId;
    if (runnerId === undefined) throw new ForbiddenError(`runner "${principal.runnerName}" must register first`);
    const body = parseOrThrow(SshAuthorizeRequestSchema, isJsonObject(request.body) ? request.body : {}, 'SSH authorize request');
    if ((body.publicKey === undefined) === (body.password === undefined)) {
      throw new InvalidError('give exactly one of publicKey and password', [
        { field: 'publicKey', message: 'exactly one of publicKey and password' },
      ]);
    }
    const now = context.options.now();
    // The environments the login could mean: by id, else by name; only those scheduled to this runner.
    const byId = await store.get('Environment', body.environment);
    const candidates: Environment[] = (byId ? [byId] : await store.getByName('Environment', body.environment)).filter(
      (environment) => environment.status.runnerId === runnerId && environment.metadata.deletionTime === undefined,
    );
    const denied = () => new ForbiddenError(`no environment "${body.environment}" on this runner accepts these credentials`);

    let userId: string | undefined;
    let environment: Environment | undefined;
    if (body.password !== undefined) {
      let user: Principal | undefined;
      try {
        user = await authenticate(store, `Bearer ${body.password}`, { now });
      } catch (error) {
        if (error instanceof UnauthorizedError) throw new UnauthorizedError('the password is not a valid personal access token');
        throw error;
      }
      if (user?.kind !== 'User') throw new UnauthorizedError('the password is not a personal access token');
      userId = user.userId;
      environment = candidates.find((candidate) => candidate.metadata.ownerId === user.userId);
    } else {
      const presented = parsePublicKey(body.publicKey ?? '');
      for (const candidate of candidates) {
        const keys = await listSshKeys(store, candidate.metadata.ownerId);
        if (keys.some((key) => key.fingerprint === presented.fingerprint)) {
          environment = candidate;
          userId = candidate.metadata.ownerId;
          break;
        }
      }
    }
    if (!environment || userId === undefined) throw denied();
    if (environment.status.phase !== 'Running') {
      throw new WarrenError('Conflict', 409, `environment "${environment.metadata.name}" is ${environment.status.phase}, not Running`);
    }
    const signed = await signAccessToken(
      context.signingKeys,
      { runnerId, userId, environmentId: environment.metadata.id },
      { ttlSeconds: context.options.accessTokenTtlSeconds, now },
    );
    context.logger.info(
      { runnerId, userId, environmentId: environment.metadata.id, method: body.password === undefined ? 'publickey' : 'password' },
      'ssh login authorized',
    );
    return { token: signed.token, expiresTime: signed.expiresTime, environmentId: environment.metadata.id, userId };
  });
}
