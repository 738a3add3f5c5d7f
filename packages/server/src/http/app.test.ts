import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalJWKSet, jwtVerify } from 'jose';
import type { AccessGrant, Environment, EnvironmentClass, ResourceList, Token } from '@warren/api';
import { closeSharedPglite } from '../storage/testing.js';
import { openApiFixture, statusOf, type ApiFixture } from './testing.js';

let fx: ApiFixture;
beforeAll(async () => {
  fx = await openApiFixture();
});
afterAll(async () => {
  await fx.close();
  await closeSharedPglite();
});

const repo = 'https://github.com/example/My_App.git';

describe('environments', () => {
  it('creates with defaults, a generated name and Pending status', async () => {
    const response = await fx.call('userA', 'POST', '/api/v1/environments', { spec: { source: { git: { url: repo } } } });
    expect(response.statusCode).toBe(201);
    const environment = response.json<Environment>();
    expect(environment.metadata.name).toMatch(/^my-app-[a-z0-9]{5}$/);
    expect(environment.metadata.ownerId).toBe(fx.userIds.userA);
    expect(environment.spec).toMatchObject({
      desiredPhase: 'Running',
      className: 'default',
      ports: [],
      timeouts: { inactivitySeconds: 3600 },
    });
    expect(environment.status).toMatchObject({ phase: 'Pending', conditions: [] });
    expect(environment.metadata.resourceVersion).toMatch(/^\d+$/);
  });

  it('gets by id and by name, and patches with a merge patch', async () => {
    const created = await fx.createEnvironment('userA', 'patch-me', { metadata: { name: 'patch-me', labels: { team: 'a', keep: 'yes' } } });
    const byName = await fx.call('userA', 'GET', '/api/v1/environments/patch-me');
    expect(byName.json<Environment>().metadata.id).toBe(created.metadata.id);
    const byId = await fx.call('userA', 'GET', `/api/v1/environments/${created.metadata.id}`);
    expect(byId.json<Environment>().metadata.name).toBe('patch-me');

    const patched = await fx.call('userA', 'PATCH', `/api/v1/environments/${created.metadata.id}`, {
      metadata: { labels: { team: null, extra: 'x' } },
      spec: { desiredPhase: 'Stopped', timeouts: { inactivitySeconds: 60 } },
    });
    expect(patched.statusCode).toBe(200);
    const environment = patched.json<Environment>();
    expect(environment.metadata.labels).toEqual({ keep: 'yes', extra: 'x' });
    expect(environment.spec.desiredPhase).toBe('Stopped');
    expect(environment.spec.timeouts.inactivitySeconds).toBe(60);
    expect(environment.spec.source.git.url).toBe('https://example.com/org/repo.git');
    expect(environment.metadata.generation).toBeGreaterThan(created.metadata.generation);

    // application/json is accepted for PATCH too.
    const plain = await fx.call(
      'userA',
      'PATCH',
      '/api/v1/environments/patch-me',
      { spec: { desiredPhase: 'Running' } },
      { 'content-type': 'application/json' },
    );
    expect(plain.json<Environment>().spec.desiredPhase).toBe('Running');
  });

  it('rejects a stale resourceVersion with 409 Conflict', async () => {
    const created = await fx.createEnvironment('userA', 'occ');
    const first = await fx.call('userA', 'PATCH', '/api/v1/environments/occ', {
      metadata: { resourceVersion: created.metadata.resourceVersion },
      spec: { desiredPhase: 'Stopped' },
    });
    expect(first.statusCode).toBe(200);
    const second = await fx.call('userA', 'PATCH', '/api/v1/environments/occ', {
      metadata: { resourceVersion: created.metadata.resourceVersion },
      spec: { desiredPhase: 'Running' },
    });
    expect(second.statusCode).toBe(409);
    expect(statusOf(second).reason).toBe('Conflict');
  });

  it('removes an unscheduled environment at once and marks a scheduled one Deleted', async () => {
    const loose = await fx.createEnvironment('userA', 'loose');
    const gone = await fx.call('userA', 'DELETE', '/api/v1/environments/loose');
    expect(gone.statusCode).toBe(200);
    expect((await fx.call('userA', 'GET', `/api/v1/environments/${loose.metadata.id}`)).statusCode).toBe(404);

    const placed = await fx.createEnvironment('userA', 'placed');
    await fx.schedule(placed.metadata.id, fx.runners.r1.metadata.id);
    const marked = await fx.call('userA', 'DELETE', '/api/v1/environments/placed');
    expect(marked.statusCode).toBe(200);
    const environment = marked.json<Environment>();
    expect(environment.spec.desiredPhase).toBe('Deleted');
    expect(environment.metadata.deletionTime).toBeDefined();
    // Still there for the runner to clean up; a second DELETE is idempotent.
    const again = await fx.call('userA', 'DELETE', '/api/v1/environments/placed');
    expect(again.json<Environment>().metadata.deletionTime).toBe(environment.metadata.deletionTime);
    // A patch cannot revive it.
    const revive = await fx.call('userA', 'PATCH', '/api/v1/environments/placed', { spec: { desiredPhase: 'Running' } });
    expect(revive.statusCode).toBe(409);
  });

  it('batches keepalives: a second one within 30 s writes nothing', async () => {
    const created = await fx.createEnvironment('userA', 'alive');
    const first = await fx.call('userA', 'POST', `/api/v1/environments/${created.metadata.id}/keepalive`, {});
    expect(first.statusCode).toBe(200);
    const afterFirst = first.json<Environment>();
    expect(afterFirst.status.lastActivityTime).toBeDefined();
    const second = await fx.call('userA', 'POST', `/api/v1/environments/${created.metadata.id}/keepalive`, {});
    expect(second.json<Environment>().metadata.resourceVersion).toBe(afterFirst.metadata.resourceVersion);
  });

  it('issues an access grant verifiable with the JWKS, and 409 when unscheduled', async () => {
    const created = await fx.createEnvironment('userA', 'reach');
    const unscheduled = await fx.call('userA', 'POST', '/api/v1/environments/reach/access', {});
    expect(unscheduled.statusCode).toBe(409);
    await fx.schedule(created.metadata.id, fx.runners.r1.metadata.id);
    const response = await fx.call('userA', 'POST', '/api/v1/environments/reach/access', {});
    expect(response.statusCode).toBe(200);
    const grant = response.json<AccessGrant>();
    expect(grant.endpoint).toBe('http://r1.invalid:7081');
    const keys = await fx.call('anonymous', 'GET', '/api/v1/keys');
    expect(keys.statusCode).toBe(200);
    const { payload } = await jwtVerify(grant.token, createLocalJWKSet(keys.json()), {
      audience: fx.runners.r1.metadata.id,
      issuer: 'warren',
    });
    expect(payload.sub).toBe(fx.userIds.userA);
    expect(payload.env).toBe(created.metadata.id);
    expect(payload.exp! - payload.iat!).toBe(300);
    // Verification with the wrong audience fails: a grant for r1 is useless on r2.
    await expect(jwtVerify(grant.token, createLocalJWKSet(keys.json()), { audience: fx.runners.r2.metadata.id })).rejects.toThrow();
  });

  it('409 when the runner has no access endpoint', async () => {
    const created = await fx.createEnvironment('userA', 'no-endpoint');
    const bare = await fx.store.create('Runner', {
      name: 'bare',
      ownerId: fx.userIds.admin,
      labels: {},
      spec: { unschedulable: false },
      status: { phase: 'Active', endpoints: {}, conditions: [] },
    });
    await fx.schedule(created.metadata.id, bare.metadata.id);
    const response = await fx.call('userA', 'POST', '/api/v1/environments/no-endpoint/access', {});
    expect(response.statusCode).toBe(409);
    expect(statusOf(response).message).toMatch(/access endpoint/);
  });
});

describe('status subresource', () => {
  it('lets a runner write the status of its environment but never move it', async () => {
    const created = await fx.createEnvironment('userA', 'status-env');
    await fx.schedule(created.metadata.id, fx.runners.r1.metadata.id);
    const url = `/api/v1/environments/${created.metadata.id}/status`;
    const ok = await fx.call('runner1', 'PUT', url, { status: { phase: 'Running', runnerId: fx.runners.r1.metadata.id, conditions: [] } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json<Environment>().status.phase).toBe('Running');
    const move = await fx.call('runner1', 'PUT', url, { status: { phase: 'Running', runnerId: fx.runners.r2.metadata.id } });
    expect(move.statusCode).toBe(403);
    // Omitting runnerId keeps it (a runner cannot unschedule itself by accident).
    const omitted = await fx.call('runner1', 'PUT', url, { status: { phase: 'Starting' } });
    expect(omitted.json<Environment>().status.runnerId).toBe(fx.runners.r1.metadata.id);
    // Stale resourceVersion: 409.
    const stale = await fx.call('runner1', 'PUT', url, {
      metadata: { resourceVersion: created.metadata.resourceVersion },
      status: { phase: 'Running' },
    });
    expect(stale.statusCode).toBe(409);
  });

  it('never moves lastActivityTime backwards', async () => {
    const created = await fx.createEnvironment('userA', 'activity');
    await fx.schedule(created.metadata.id, fx.runners.r1.metadata.id);
    const kept = await fx.call('userA', 'POST', '/api/v1/environments/activity/keepalive', {});
    const at = kept.json<Environment>().status.lastActivityTime;
    const written = await fx.call('runner1', 'PUT', `/api/v1/environments/${created.metadata.id}/status`, {
      status: { phase: 'Running', lastActivityTime: '2000-01-01T00:00:00.000Z' },
    });
    expect(written.json<Environment>().status.lastActivityTime).toBe(at);
  });

  it('runners register themselves and heartbeat', async () => {
    const registered = await fx.call('runner1', 'GET', '/api/v1/runners/r1');
    expect(registered.statusCode).toBe(200);
    const heartbeat = await fx.call('runner1', 'PUT', '/api/v1/runners/r1/status', {
      status: { phase: 'Active', lastHeartbeatTime: new Date().toISOString(), endpoints: { access: 'http://127.0.0.1:1' } },
    });
    expect(heartbeat.statusCode).toBe(200);
  });
});

describe('tokens and bootstrap objects', () => {
  it('shows a token secret once and authenticates with it', async () => {
    const created = await fx.call('userA', 'POST', '/api/v1/tokens', { metadata: { name: 'laptop' }, spec: { description: 'my laptop' } });
    expect(created.statusCode).toBe(201);
    const token = created.json<Token>();
    expect(token.status.secret).toMatch(/^wrn_[A-Za-z0-9_-]{43}$/);
    const again = await fx.call('userA', 'GET', '/api/v1/tokens/laptop');
    expect(again.json<Token>().status.secret).toBeUndefined();
    const whoami = await fx.app.inject({ url: '/api/v1/whoami', headers: { authorization: `Bearer ${token.status.secret}` } });
    expect(whoami.json()).toEqual({ kind: 'User', id: fx.userIds.userA, name: 'alice', admin: false });
  });

  it('refuses expired and unknown tokens with 401', async () => {
    const created = await fx.call('userA', 'POST', '/api/v1/tokens', {
      spec: { expiresTime: new Date(Date.now() + 60_000).toISOString() },
    });
    const token = created.json<Token>();
    await fx.store.update('Token', token.metadata.id, (current) => ({
      ...current,
      spec: { ...current.spec, expiresTime: '2001-01-01T00:00:00.000Z' },
    }));
    const expired = await fx.app.inject({ url: '/api/v1/whoami', headers: { authorization: `Bearer ${token.status.secret}` } });
    expect(expired.statusCode).toBe(401);
    expect(statusOf(expired).reason).toBe('Unauthorized');
    const unknown = await fx.app.inject({ url: '/api/v1/whoami', headers: { authorization: 'Bearer wrn_nope' } });
    expect(unknown.statusCode).toBe(401);
    const scheme = await fx.app.inject({ url: '/api/v1/whoami', headers: { authorization: 'Basic abc' } });
    expect(scheme.statusCode).toBe(401);
  });

  it('admins mint runner tokens that act as that runner', async () => {
    const created = await fx.call('admin', 'POST', '/api/v1/tokens', { spec: { type: 'Runner', runnerName: 'r9' } });
    expect(created.statusCode).toBe(201);
    const secret = created.json<Token>().status.secret!;
    expect(secret).toMatch(/^wrr_/);
    const register = await fx.app.inject({
      method: 'POST',
      url: '/api/v1/runners',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      payload: { metadata: { name: 'r9' } },
    });
    expect(register.statusCode).toBe(201);
    const other = await fx.app.inject({
      method: 'POST',
      url: '/api/v1/runners',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      payload: { metadata: { name: 'r10' } },
    });
    expect(other.statusCode).toBe(403);
    const whoami = await fx.app.inject({ url: '/api/v1/whoami', headers: { authorization: `Bearer ${secret}` } });
    expect(whoami.json()).toMatchObject({ kind: 'Runner', name: 'r9', admin: false });
    expect(whoami.json<{ id: string }>().id).toBe(register.json<{ metadata: { id: string } }>().metadata.id);
  });

  it('bootstrap created the default class', async () => {
    const response = await fx.call('userB', 'GET', '/api/v1/environmentclasses/default');
    expect(response.json<EnvironmentClass>().spec).toMatchObject({
      cpuMillicores: 2000,
      memoryBytes: 4 * 1024 ** 3,
      swapBytes: 0,
      pids: 4096,
    });
  });

  it('lists carry the list kind and a resourceVersion', async () => {
    const response = await fx.call('admin', 'GET', '/api/v1/users');
    const list = response.json<ResourceList<unknown>>();
    expect(list.kind).toBe('UserList');
    expect(list.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(list.items.length).toBeGreaterThanOrEqual(3);
  });
});
