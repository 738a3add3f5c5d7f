// First-start setup of a fresh control plane: the admin user, their token and the default environment class.
import { randomBytes } from 'node:crypto';
import { WarrenError } from '@warren/base';
import type { User } from '@warren/api';
import { type ResourceStore, newObjectId } from '../storage/index.js';
import { issueToken } from './tokens.js';

/** Name of the admin user created on first start. */
export const ADMIN_USER_NAME = 'admin';
/** Name of the EnvironmentClass created on first start; `spec.className` defaults to it. */
export const DEFAULT_CLASS_NAME = 'default';
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
 * EnvironmentClass `default` (2000 millicores, 4 GiB memory, no swap, 4096 pids) when they do not exist.
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
  if ((await store.getByName('EnvironmentClass', DEFAULT_CLASS_NAME)).length === 0) {
    try {
      await store.create('EnvironmentClass', {
        name: DEFAULT_CLASS_NAME,
        ownerId: admin.metadata.id,
        labels: {},
        spec: {
          displayName: 'Default (2 CPUs, 4 GiB)',
          cpuMillicores: 2000,
          memoryBytes: 4 * 1024 ** 3,
          swapBytes: 0,
          pids: 4096,
        },
        status: {},
      });
    } catch (error) {
      if (!isAlreadyExists(error)) throw error;
    }
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
