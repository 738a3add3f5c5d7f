// Test fixture for API tests: the real app on a real (PGlite) store with one principal of each sort.
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { silentLogger } from '@warren/base';
import type { Environment, Runner, Status } from '@warren/api';
import { openTestStore, type TestStore } from '../storage/testing.js';
import type { OpenStoreOptions, SqlStore } from '../storage/index.js';
import { bootstrap, issueToken, loadSigningKeys, type SigningKeys } from '../auth/index.js';
import { buildApp, type AppOptions } from './app.js';

/** The principals of the fixture. `runner1`/`runner2` are registered runners `r1`/`r2`. */
export type PrincipalName = 'anonymous' | 'admin' | 'userA' | 'userB' | 'runner1' | 'runner2';

/** A running fixture: call `close()` in afterEach/afterAll. */
export interface ApiFixture {
  app: FastifyInstance;
  store: SqlStore;
  testStore: TestStore;
  signingKeys: SigningKeys;
  tokens: Record<Exclude<PrincipalName, 'anonymous'>, string>;
  userIds: { admin: string; userA: string; userB: string };
  runners: { r1: Runner; r2: Runner };
  /** Sends a request as `who`; `body` objects are sent as JSON unless `rawBody` is given. */
  call(who: PrincipalName, method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  /** Creates an environment owned by `who` (a user) via the API. */
  createEnvironment(who: PrincipalName, name: string, extra?: Record<string, unknown>): Promise<Environment>;
  /** Schedules an environment to a runner, as the scheduler controller does (directly in the store). */
  schedule(environmentId: string, runnerId: string): Promise<Environment>;
  close(): Promise<void>;
}

/**
 * Opens a fresh store (own schema in a shared in-memory PGlite), bootstraps it, adds users `alice` and `bob`,
 * runners `r1` and `r2` with runner tokens, and builds the app.
 */
export async function openApiFixture(appOptions: AppOptions = {}, storeOptions: Partial<OpenStoreOptions> = {}): Promise<ApiFixture> {
  const testStore = await openTestStore('pglite', storeOptions);
  const store = testStore.store;
  const boot = await bootstrap(store);
  if (!boot.adminToken) throw new Error('bootstrap of a fresh store must return the admin token');
  const signingKeys = await loadSigningKeys(store);
  const app = buildApp({ store, logger: silentLogger, signingKeys, options: appOptions });
  await app.ready();
  const adminId = boot.admin.metadata.id;

  const makeUser = async (name: string) => {
    const user = await store.create('User', { name, ownerId: adminId, labels: {}, spec: { admin: false }, status: {} });
    const { secret } = await issueToken(store, { name: `${name}-token`, ownerId: user.metadata.id, type: 'Personal' });
    return { id: user.metadata.id, secret };
  };
  const alice = await makeUser('alice');
  const bob = await makeUser('bob');
  const makeRunner = async (name: string) => {
    const runner = await store.create('Runner', {
      name,
      ownerId: adminId,
      labels: {},
      spec: { unschedulable: false },
      status: { phase: 'Active', endpoints: { access: `http://${name}.invalid:7081` }, conditions: [] },
    });
    const { secret } = await issueToken(store, { name: `${name}-token`, ownerId: adminId, type: 'Runner', runnerName: name });
    return { runner, secret };
  };
  const r1 = await makeRunner('r1');
  const r2 = await makeRunner('r2');
  const tokens = { admin: boot.adminToken, userA: alice.secret, userB: bob.secret, runner1: r1.secret, runner2: r2.secret };

  const call: ApiFixture['call'] = (who, method, url, body, headers = {}) => {
    const allHeaders: Record<string, string> = { ...headers };
    if (who !== 'anonymous') allHeaders.authorization = `Bearer ${tokens[who]}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      allHeaders['content-type'] ??= method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    }
    return app.inject({ method: method as 'GET', url, headers: allHeaders, ...(payload === undefined ? {} : { payload }) });
  };

  return {
    app,
    store,
    testStore,
    signingKeys,
    tokens,
    userIds: { admin: adminId, userA: alice.id, userB: bob.id },
    runners: { r1: r1.runner, r2: r2.runner },
    call,
    async createEnvironment(who, name, extra = {}) {
      const response = await call(who, 'POST', '/api/v1/environments', {
        metadata: { name },
        spec: { source: { git: { url: 'https://example.com/org/repo.git' } } },
        ...extra,
      });
      if (response.statusCode !== 201) throw new Error(`create environment ${name} failed: ${response.statusCode} ${response.body}`);
      return response.json<Environment>();
    },
    async schedule(environmentId, runnerId) {
      return store.update('Environment', environmentId, (current) => ({ ...current, status: { ...current.status, runnerId } }));
    },
    async close() {
      await app.close();
      await testStore.cleanup();
    },
  };
}

/** Parses a response body as a Status envelope, failing loudly when it is not one. */
export function statusOf(response: LightMyRequestResponse): Status {
  const body = response.json<Status>();
  if (body.kind !== 'Status') throw new Error(`expected a Status body, got ${response.body.slice(0, 300)}`);
  return body;
}
