import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeSharedPglite, openTestStore, type TestStore } from '../storage/testing.js';
import { ADMIN_USER_NAME, DEFAULT_CLASS_SPEC, bootstrap, ensureRunnerToken } from './bootstrap.js';
import { authenticate } from './principal.js';
import { loadSigningKeys } from './signing.js';
import { hashTokenSecret, issueToken } from './tokens.js';

let testStore: TestStore;
beforeEach(async () => {
  testStore = await openTestStore('pglite');
});
afterEach(async () => {
  await testStore.cleanup();
});
afterAll(async () => {
  await closeSharedPglite();
});

describe('bootstrap', () => {
  it('creates the admin, a token and the default class once', async () => {
    const store = testStore.store;
    const first = await bootstrap(store);
    expect(first.adminToken).toMatch(/^wrn_[A-Za-z0-9_-]{43}$/);
    const second = await bootstrap(store);
    expect(second.adminToken).toBeUndefined();
    expect(second.admin.metadata.id).toBe(first.admin.metadata.id);
    expect(await store.getByName('User', ADMIN_USER_NAME)).toHaveLength(1);
    expect(await store.getByName('EnvironmentClass', 'default')).toHaveLength(1);
    const principal = await authenticate(store, `Bearer ${first.adminToken}`);
    expect(principal).toMatchObject({ kind: 'User', name: 'admin', admin: true });
  });

  it('creates a burstable default class and upgrades one an older version created, unless an admin changed it', async () => {
    const store = testStore.store;
    await bootstrap(store);
    const [created] = await store.getByName('EnvironmentClass', 'default');
    expect(created?.spec).toEqual(DEFAULT_CLASS_SPEC);
    expect(created?.spec.requests).toEqual({ cpuMillicores: 250, memoryBytes: 1024 ** 3 });
    const old = { displayName: 'Default (2 CPUs, 4 GiB)', cpuMillicores: 2000, memoryBytes: 4 * 1024 ** 3, swapBytes: 0, pids: 4096 };
    await store.update('EnvironmentClass', created!.metadata.id, (current) => ({ ...current, spec: old }));
    await bootstrap(store);
    expect((await store.get('EnvironmentClass', created!.metadata.id))?.spec).toEqual(DEFAULT_CLASS_SPEC);
    const changed = { ...old, cpuMillicores: 1000 };
    await store.update('EnvironmentClass', created!.metadata.id, (current) => ({ ...current, spec: changed }));
    await bootstrap(store);
    expect((await store.get('EnvironmentClass', created!.metadata.id))?.spec).toEqual(changed);
  });

  it('is safe when two servers bootstrap one database at once', async () => {
    const other = await testStore.openAnother();
    const results = await Promise.all([bootstrap(testStore.store), bootstrap(other)]);
    expect(results.filter((result) => result.adminToken !== undefined)).toHaveLength(1);
    expect(await testStore.store.getByName('User', ADMIN_USER_NAME)).toHaveLength(1);
  });
});

describe('tokens', () => {
  it('stores only the SHA-256 of the secret', async () => {
    const store = testStore.store;
    const { admin } = await bootstrap(store);
    const { token, secret } = await issueToken(store, { name: 'x', ownerId: admin.metadata.id, type: 'Personal' });
    expect(hashTokenSecret(secret)).toMatch(/^[0-9a-f]{64}$/);
    expect((await store.findTokenBySecretHash(hashTokenSecret(secret)))?.metadata.id).toBe(token.metadata.id);
    expect((await store.get('Token', token.metadata.id))?.status.secret).toBeUndefined();
  });

  it('records lastUsedTime at most once per interval', async () => {
    const store = testStore.store;
    const { adminToken } = await bootstrap(store);
    const t0 = new Date('2030-01-01T00:00:00Z');
    const principal = await authenticate(store, `Bearer ${adminToken}`, { now: t0 });
    const tokenId = principal!.tokenId;
    expect((await store.get('Token', tokenId))?.status.lastUsedTime).toBe(t0.toISOString());
    await authenticate(store, `Bearer ${adminToken}`, { now: new Date(t0.getTime() + 30_000) });
    expect((await store.get('Token', tokenId))?.status.lastUsedTime).toBe(t0.toISOString());
    const t2 = new Date(t0.getTime() + 61_000);
    await authenticate(store, `Bearer ${adminToken}`, { now: t2 });
    expect((await store.get('Token', tokenId))?.status.lastUsedTime).toBe(t2.toISOString());
  });

  it('ensureRunnerToken mints a runner token and revokes the previous one', async () => {
    const store = testStore.store;
    await bootstrap(store);
    const first = await ensureRunnerToken(store, 'local');
    expect(first).toMatch(/^wrr_/);
    expect(await authenticate(store, `Bearer ${first}`)).toMatchObject({ kind: 'Runner', runnerName: 'local', runnerId: undefined });
    const second = await ensureRunnerToken(store, 'local');
    await expect(authenticate(store, `Bearer ${first}`)).rejects.toMatchObject({ code: 401 });
    expect(await authenticate(store, `Bearer ${second}`)).toMatchObject({ kind: 'Runner', runnerName: 'local' });
  });

  it('refuses tokens whose owner was deleted', async () => {
    const store = testStore.store;
    const { admin } = await bootstrap(store);
    const user = await store.create('User', { name: 'temp', ownerId: admin.metadata.id, labels: {}, spec: { admin: false }, status: {} });
    const { secret } = await issueToken(store, { name: 'temp-token', ownerId: user.metadata.id, type: 'Personal' });
    await store.delete('User', user.metadata.id);
    await expect(authenticate(store, `Bearer ${secret}`)).rejects.toMatchObject({ code: 401, reason: 'Unauthorized' });
  });
});

describe('signing key', () => {
  it('is created once and then reused', async () => {
    const first = await loadSigningKeys(testStore.store);
    const second = await loadSigningKeys(testStore.store);
    expect(second.kid).toBe(first.kid);
    expect(second.publicJwk).toEqual(first.publicJwk);
    expect(first.publicJwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    expect(first.publicJwk.d).toBeUndefined();
  });
});
