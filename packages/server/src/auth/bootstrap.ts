// First-start setup of a fresh control plane: the admin user, their token and the default environment class.
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { WarrenError } from '@warren/base';
import type { EnvironmentClassSpec, User } from '@warren/api';
import { type ResourceStore, newObjectId } from '../storage/index.js';
import { issueToken } from './tokens.js';

/** Name of the admin user created on first start. */
export const ADMIN_USER_NAME = 'admin';
/** Name of the EnvironmentClass created on first start; `spec.className` defaults to it. */
export const DEFAULT_CLASS_NAME = 'default';
/**
 * Spec of the built-in `default` class: a burstable class. Each environment may use both cores of a 2-core host
 * and 4 GiB, and is guaranteed (and scheduled by) 250 millicores and 1 GiB, so with a runner's default
 * overbooking (CPU × 4) and reservation (250m, 1 GiB) a 2-core, 24 GiB host runs 23 of them (memory-bound) and
 * a 2-core, 8 GiB host 7. docs/design/0010-requests-and-limits.md.
 */
export const DEFAULT_CLASS_SPEC: EnvironmentClassSpec = {
  displayName: 'Default (bursts to 2 CPUs, 4 GiB; guaranteed 0.25 CPU, 1 GiB)',
  cpuMillicores: 2000,
  memoryBytes: 4 * 1024 ** 3,
  requests: { cpuMillicores: 250, memoryBytes: 1024 ** 3 },
  swapBytes: 0,
  pids: 4096,
};

/**
 * The `default` class as versions before requests created it: limits only, so it reserved the whole of a 2-core
 * host. A stored `default` class still exactly like this was never changed by an admin and is upgraded.
 */
const PRE_REQUESTS_DEFAULT_CLASS_SPEC: EnvironmentClassSpec = {
  displayName: 'Default (2 CPUs, 4 GiB)',
  cpuMillicores: 2000,
  memoryBytes: 4 * 1024 ** 3,
  swapBytes: 0,
  pids: 4096,
};

/** Label on runner tokens minted by {@link ensureRunnerToken}; its value is the runner name. */
export const LOCAL_RUNNER_TOKEN_LABEL = 'warren.dev/local-runner';

/** Result of {@link bootstrap}. */
export interface BootstrapResult {
  /** The admin's personal access token secret; present only when the admin was created by this call. */
  adminToken?: string;
  /** The admin user (new or existing). */
  admin: User;
}

/**
 * Idempotent first-start setup: creates the admin user `admin` with a personal access token, and the
 * EnvironmentClass `default` ({@link DEFAULT_CLASS_SPEC}) when they do not exist. A stored `default` class whose
 * spec is still exactly the one older versions created (limits only) gets {@link DEFAULT_CLASS_SPEC}; one an
 * admin changed is left alone.
 * Safe when several servers start at once on one database: a lost creation race counts as "exists".
 * @returns the admin token secret only when the admin was created now (it cannot be shown again).
 */
export async function bootstrap(store: ResourceStore): Promise<BootstrapResult> {
  let adminToken: string | undefined;
  let admin = (await store.getByName('User', ADMIN_USER_NAME))[0];
  if (!admin) {
    const id = newObjectId('User'); // known before create: the admin owns itself
    try {
      admin = await store.create('User', {
        id,
        name: ADMIN_USER_NAME,
        ownerId: id,
        labels: {},
        spec: { displayName: 'Administrator', admin: true },
        status: {},
      });
      const issued = await issueToken(store, {
        name: `admin-${randomSuffix()}`,
        ownerId: admin.metadata.id,
        type: 'Personal',
        description: 'created on first start',
      });
      adminToken = issued.secret;
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
      admin = (await store.getByName('User', ADMIN_USER_NAME))[0];
      if (!admin) throw new Error('admin user vanished during bootstrap', { cause: error });
    }
  }
  const existingClass = (await store.getByName('EnvironmentClass', DEFAULT_CLASS_NAME))[0];
  if (!existingClass) {
    try {
      await store.create('EnvironmentClass', {
        name: DEFAULT_CLASS_NAME,
        ownerId: admin.metadata.id,
        labels: {},
        spec: structuredClone(DEFAULT_CLASS_SPEC),
        status: {},
      });
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
    }
  } else if (isDeepStrictEqual(existingClass.spec, PRE_REQUESTS_DEFAULT_CLASS_SPEC)) {
    // Checked again inside the update, so an admin's change made meanwhile (or another server's upgrade) wins.
    await store.update('EnvironmentClass', existingClass.metadata.id, (current) =>
      isDeepStrictEqual(current.spec, PRE_REQUESTS_DEFAULT_CLASS_SPEC)
        ? { ...current, spec: structuredClone(DEFAULT_CLASS_SPEC) }
        : undefined,
    );
  }
  return adminToken === undefined ? { admin } : { admin, adminToken };
}

/**
 * Mints a fresh runner token for the local runner `runnerName` (used by `warren up`, which runs server and
 * runner in one process). Earlier tokens minted by this function for the same runner are deleted, so restarts
 * do not pile up tokens. Requires {@link bootstrap} to have run (the token is owned by the admin).
 * @returns the token secret (`wrr_...`).
 * @throws {Error} when there is no admin user.
 */
export async function ensureRunnerToken(store: ResourceStore, runnerName: string): Promise<string> {
  const admin = (await store.getByName('User', ADMIN_USER_NAME))[0];
  if (!admin) throw new Error('ensureRunnerToken needs the admin user: call bootstrap() first');
  const previous = await store.list('Token', { labels: { [LOCAL_RUNNER_TOKEN_LABEL]: runnerName } });
  for (const token of previous.items) {
    await store.delete('Token', token.metadata.id).catch((error: unknown) => {
      if (!(error instanceof WarrenError && error.code === 404)) throw error;
    });
  }
  const { secret } = await issueToken(store, {
    name: `runner-${runnerName.slice(0, 48)}-${randomSuffix()}`.replace(/--+/g, '-'),
    ownerId: admin.metadata.id,
    type: 'Runner',
    runnerName,
    description: `local runner "${runnerName}"`,
    labels: { [LOCAL_RUNNER_TOKEN_LABEL]: runnerName },
  });
  return secret;
}

/** Five random characters of `[a-z0-9]`, for generated names. */
export function randomSuffix(length = 5): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(length);
  let out = '';
  for (const byte of bytes) out += alphabet[byte % alphabet.length];
  return out;
}

function isAlreadyExists(error: unknown): boolean {
  return error instanceof WarrenError && error.reason === 'AlreadyExists';
}
