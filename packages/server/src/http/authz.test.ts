// Every endpoint for every principal: anonymous, admin, user A, user B, runner r1 (on its own objects) and
// runner r2 (on r1's objects). Objects used: environment `envA` of user A scheduled to r1, runner r1, class
// `default`, user alice (= user A), tokens of alice. Destructive calls get a fresh target per call.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import type { ResourceList, Resource } from '@warren/api';
import { issueToken, randomSuffix } from '../auth/index.js';
import { closeSharedPglite } from '../storage/testing.js';
import { openApiFixture, type ApiFixture, type PrincipalName } from './testing.js';

let fx: ApiFixture;
let envAId: string;
let aliceTokenId: string;

beforeAll(async () => {
  fx = await openApiFixture();
  const envA = await fx.createEnvironment('userA', 'env-a');
  envAId = envA.metadata.id;
  await fx.schedule(envAId, fx.runners.r1.metadata.id);
  aliceTokenId = (await fx.store.getByName('Token', 'alice-token'))[0]!.metadata.id;
});
afterAll(async () => {
  await fx.close();
  await closeSharedPglite();
});

const PRINCIPALS: PrincipalName[] = ['anonymous', 'admin', 'userA', 'userB', 'runner1', 'runner2'];
type Expect = [anonymous: number, admin: number, userA: number, userB: number, runner1: number, runner2: number];

interface Endpoint {
  name: string;
  method: string;
  /** URL, possibly built from fresh objects made for this call. */
  url: () => string | Promise<string>;
  body?: () => unknown;
  expect: Expect;
  /** Extra check on a 2xx response (e.g. list contents). */
  check?: (response: LightMyRequestResponse, who: PrincipalName) => void;
}

const names = (response: LightMyRequestResponse) => response.json<ResourceList<Resource>>().items.map((item) => item.metadata.name);
const environmentBody = () => ({ spec: { source: { git: { url: 'https://example.com/o/r.git' } } } });

async function freshEnvironment(): Promise<string> {
  const environment = await fx.createEnvironment('userA', `tmp-${randomSuffix()}`);
  await fx.schedule(environment.metadata.id, fx.runners.r1.metadata.id);
  return environment.metadata.id;
}
async function freshRunner(): Promise<string> {
  const runner = await fx.store.create('Runner', {
    name: `tmp-${randomSuffix()}`,
    ownerId: fx.userIds.admin,
    labels: {},
    spec: { unschedulable: false },
    status: { phase: 'Inactive', endpoints: {}, conditions: [] },
  });
  return runner.metadata.id;
}
async function freshClass(): Promise<string> {
  const made = await fx.store.create('EnvironmentClass', {
    name: `tmp-${randomSuffix()}`,
    ownerId: fx.userIds.admin,
    labels: {},
    spec: { cpuMillicores: 100, memoryBytes: 64 * 1024 ** 2, swapBytes: 0, pids: 100 },
    status: {},
  });
  return made.metadata.id;
}
async function freshUser(): Promise<string> {
  const user = await fx.store.create('User', {
    name: `tmp-${randomSuffix()}`,
    ownerId: fx.userIds.admin,
    labels: {},
    spec: { admin: false },
    status: {},
  });
  return user.metadata.id;
}
async function freshAliceToken(): Promise<string> {
  const { token } = await issueToken(fx.store, { name: `tmp-${randomSuffix()}`, ownerId: fx.userIds.userA, type: 'Personal' });
  return token.metadata.id;
}

const ENDPOINTS: Endpoint[] = [
  // ------------------------------------------------------------ environments
  {
    name: 'list environments',
    method: 'GET',
    url: () => '/api/v1/environments',
    expect: [401, 200, 200, 200, 200, 200],
    check: (response, who) => {
      const seesEnvA = names(response).includes('env-a');
      expect(seesEnvA).toBe(who === 'admin' || who === 'userA' || who === 'runner1');
    },
  },
  { name: 'get environment', method: 'GET', url: () => `/api/v1/environments/${envAId}`, expect: [401, 200, 200, 404, 200, 403] },
  { name: 'get environment by name', method: 'GET', url: () => '/api/v1/environments/env-a', expect: [401, 200, 200, 404, 200, 403] },
  {
    name: 'create environment',
    method: 'POST',
    url: () => '/api/v1/environments',
    body: environmentBody,
    expect: [401, 201, 201, 201, 403, 403],
  },
  {
    name: 'patch environment',
    method: 'PATCH',
    url: () => `/api/v1/environments/${envAId}`,
    body: () => ({ metadata: { labels: { touched: 'yes' } } }),
    expect: [401, 200, 200, 404, 403, 403],
  },
  {
    name: 'delete environment',
    method: 'DELETE',
    url: async () => `/api/v1/environments/${await freshEnvironment()}`,
    expect: [401, 200, 200, 404, 403, 403],
  },
  {
    name: 'put environment status',
    method: 'PUT',
    url: () => `/api/v1/environments/${envAId}/status`,
    body: () => ({ status: { phase: 'Running' } }),
    expect: [401, 200, 403, 404, 200, 403],
  },
  {
    name: 'keepalive',
    method: 'POST',
    url: () => `/api/v1/environments/${envAId}/keepalive`,
    body: () => ({}),
    expect: [401, 200, 200, 404, 200, 403],
  },
  {
    name: 'access grant',
    method: 'POST',
    url: () => `/api/v1/environments/${envAId}/access`,
    body: () => ({}),
    expect: [401, 200, 200, 404, 403, 403],
  },
  // ------------------------------------------------------------ runners
  {
    name: 'list runners',
    method: 'GET',
    url: () => '/api/v1/runners',
    expect: [401, 200, 200, 200, 200, 200],
    check: (response, who) => {
      const listed = names(response);
      if (who === 'runner1') expect(listed).toEqual(['r1']);
      else if (who === 'runner2') expect(listed).toEqual(['r2']);
      else expect(listed).toEqual(expect.arrayContaining(['r1', 'r2']));
    },
  },
  { name: 'get runner', method: 'GET', url: () => '/api/v1/runners/r1', expect: [401, 200, 200, 200, 200, 403] },
  {
    name: 'create runner',
    method: 'POST',
    url: () => '/api/v1/runners',
    body: () => ({ metadata: { name: `new-${randomSuffix()}` } }),
    expect: [401, 201, 403, 403, 403, 403],
  },
  {
    name: 'patch runner',
    method: 'PATCH',
    url: () => '/api/v1/runners/r1',
    body: () => ({ metadata: { labels: { zone: 'a' } } }),
    expect: [401, 200, 403, 403, 403, 403],
  },
  {
    name: 'delete runner',
    method: 'DELETE',
    url: async () => `/api/v1/runners/${await freshRunner()}`,
    expect: [401, 200, 403, 403, 403, 403],
  },
  {
    name: 'put runner status',
    method: 'PUT',
    url: () => '/api/v1/runners/r1/status',
    body: () => ({ status: { phase: 'Active', endpoints: { access: 'http://r1.invalid:7081' } } }),
    expect: [401, 200, 403, 403, 200, 403],
  },
  // ------------------------------------------------------------ environment classes
  {
    name: 'list classes',
    method: 'GET',
    url: () => '/api/v1/environmentclasses',
    expect: [401, 200, 200, 200, 200, 200],
    check: (response) => expect(names(response)).toContain('default'),
  },
  { name: 'get class', method: 'GET', url: () => '/api/v1/environmentclasses/default', expect: [401, 200, 200, 200, 200, 200] },
  {
    name: 'create class',
    method: 'POST',
    url: () => '/api/v1/environmentclasses',
    body: () => ({ metadata: { name: `c-${randomSuffix()}` }, spec: { cpuMillicores: 500, memoryBytes: 512 * 1024 ** 2 } }),
    expect: [401, 201, 403, 403, 403, 403],
  },
  {
    name: 'patch class',
    method: 'PATCH',
    url: async () => `/api/v1/environmentclasses/${await freshClass()}`,
    body: () => ({ spec: { pids: 200 } }),
    expect: [401, 200, 403, 403, 403, 403],
  },
  {
    name: 'delete class',
    method: 'DELETE',
    url: async () => `/api/v1/environmentclasses/${await freshClass()}`,
    expect: [401, 200, 403, 403, 403, 403],
  },
  // ------------------------------------------------------------ users
  {
    name: 'list users',
    method: 'GET',
    url: () => '/api/v1/users',
    expect: [401, 200, 200, 200, 403, 403],
    check: (response, who) => {
      if (who === 'userA') expect(names(response)).toEqual(['alice']);
      if (who === 'userB') expect(names(response)).toEqual(['bob']);
      if (who === 'admin') expect(names(response)).toEqual(expect.arrayContaining(['admin', 'alice', 'bob']));
    },
  },
  { name: 'get user', method: 'GET', url: () => '/api/v1/users/alice', expect: [401, 200, 200, 404, 403, 403] },
  {
    name: 'create user',
    method: 'POST',
    url: () => '/api/v1/users',
    body: () => ({ metadata: { name: `u-${randomSuffix()}` } }),
    expect: [401, 201, 403, 403, 403, 403],
  },
  {
    name: 'patch user',
    method: 'PATCH',
    url: async () => `/api/v1/users/${await freshUser()}`,
    body: () => ({ spec: { displayName: 'X' } }),
    expect: [401, 200, 403, 403, 403, 403],
  },
  { name: 'delete user', method: 'DELETE', url: async () => `/api/v1/users/${await freshUser()}`, expect: [401, 200, 403, 403, 403, 403] },
  // ------------------------------------------------------------ tokens
  {
    name: 'list tokens',
    method: 'GET',
    url: () => '/api/v1/tokens',
    expect: [401, 200, 200, 200, 403, 403],
    check: (response, who) => {
      const listed = names(response);
      expect(listed.includes('alice-token')).toBe(who === 'admin' || who === 'userA');
      expect(response.body).not.toContain('"secret"');
    },
  },
  { name: 'get token', method: 'GET', url: () => `/api/v1/tokens/${aliceTokenId}`, expect: [401, 200, 200, 404, 403, 403] },
  { name: 'create personal token', method: 'POST', url: () => '/api/v1/tokens', body: () => ({}), expect: [401, 201, 201, 201, 403, 403] },
  {
    name: 'create runner token',
    method: 'POST',
    url: () => '/api/v1/tokens',
    body: () => ({ spec: { type: 'Runner', runnerName: 'r3' } }),
    expect: [401, 201, 403, 403, 403, 403],
  },
  {
    name: 'patch token',
    method: 'PATCH',
    url: async () => `/api/v1/tokens/${await freshAliceToken()}`,
    body: () => ({ spec: { description: 'renamed' } }),
    expect: [401, 200, 200, 404, 403, 403],
  },
  {
    name: 'delete token',
    method: 'DELETE',
    url: async () => `/api/v1/tokens/${await freshAliceToken()}`,
    expect: [401, 200, 200, 404, 403, 403],
  },
  // ------------------------------------------------------------ misc
  { name: 'whoami', method: 'GET', url: () => '/api/v1/whoami', expect: [401, 200, 200, 200, 200, 200] },
  { name: 'healthz', method: 'GET', url: () => '/healthz', expect: [200, 200, 200, 200, 200, 200] },
  { name: 'keys', method: 'GET', url: () => '/api/v1/keys', expect: [200, 200, 200, 200, 200, 200] },
  { name: 'openapi', method: 'GET', url: () => '/api/v1/openapi.json', expect: [200, 200, 200, 200, 200, 200] },
];

describe('authorization matrix', () => {
  for (const endpoint of ENDPOINTS) {
    PRINCIPALS.forEach((who, index) => {
      const expected = endpoint.expect[index]!;
      it(`${endpoint.name} as ${who} → ${expected}`, async () => {
        const url = await endpoint.url();
        const response = await fx.call(who, endpoint.method, url, endpoint.body?.());
        expect(response.statusCode, response.body.slice(0, 300)).toBe(expected);
        if (expected >= 400) {
          const status = response.json<{ kind: string; code: number }>();
          expect(status).toMatchObject({ kind: 'Status', code: expected });
        } else {
          endpoint.check?.(response, who);
        }
      });
    });
  }

  it("a user with another user's environment name sees only their own", async () => {
    const mine = await fx.createEnvironment('userB', 'env-a'); // same name as user A's: names are per owner
    const response = await fx.call('userB', 'GET', '/api/v1/environments/env-a');
    expect(response.json<Resource>().metadata.id).toBe(mine.metadata.id);
    const admin = await fx.call('admin', 'GET', '/api/v1/environments/env-a');
    expect(admin.statusCode).toBe(409); // ambiguous for someone who sees both
  });

  it('a runner token cannot read environments of another runner by runnerId', async () => {
    const response = await fx.call('runner2', 'GET', `/api/v1/environments?runnerId=${fx.runners.r1.metadata.id}`);
    expect(response.statusCode).toBe(403);
  });
});
