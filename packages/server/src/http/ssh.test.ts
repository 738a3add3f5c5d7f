// SSH keys and the runners' login check, in-process against PGlite.
import { generateKeyPairSync } from 'node:crypto';
import type { SshGrant, SshKey } from '@warren/api';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwks } from '../auth/index.js';
import { type ApiFixture, openApiFixture, statusOf } from './testing.js';
import { parsePublicKey } from './ssh.js';

/** An OpenSSH `ssh-ed25519` public key line for a fresh key (RFC 8709 §4 blob: string type, string key). */
function ed25519Line(comment: string): string {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.concat([Buffer.from([0, 0, 0, type.length]), type, Buffer.from([0, 0, 0, 32]), raw]);
  return `ssh-ed25519 ${blob.toString('base64')} ${comment}`;
}

describe('SSH keys and SSH authorization', () => {
  let fx: ApiFixture;
  const aliceKey = ed25519Line('alice@laptop');
  const bobKey = ed25519Line('bob@laptop');
  let environmentId: string;

  beforeAll(async () => {
    fx = await openApiFixture();
    const environment = await fx.createEnvironment('userA', 'shared-name');
    environmentId = environment.metadata.id;
    await fx.schedule(environmentId, fx.runners.r1.metadata.id);
    await fx.store.update('Environment', environmentId, (current) => ({ ...current, status: { ...current.status, phase: 'Running' } }));
    // Bob has an environment of the same name on the same runner.
    const bobs = await fx.createEnvironment('userB', 'shared-name');
    await fx.schedule(bobs.metadata.id, fx.runners.r1.metadata.id);
  });

  afterAll(async () => {
    await fx?.close();
  });

  it('parses OpenSSH key lines and refuses malformed ones', () => {
    const parsed = parsePublicKey(aliceKey);
    expect(parsed.type).toBe('ssh-ed25519');
    expect(parsed.comment).toBe('alice@laptop');
    expect(parsed.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(() => parsePublicKey('ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDw1')).toThrow(/publicKey/);
    expect(() => parsePublicKey('nonsense')).toThrow(/publicKey/);
  });

  it('lets each user add, list and delete only their own keys', async () => {
    const added = await fx.call('userA', 'POST', '/api/v1/sshkeys', { publicKey: aliceKey });
    expect(added.statusCode).toBe(201);
    const key = added.json<SshKey>();
    expect(key).toMatchObject({ kind: 'SshKey', name: 'alice@laptop', fingerprint: parsePublicKey(aliceKey).fingerprint });
    expect((await fx.call('userA', 'POST', '/api/v1/sshkeys', { publicKey: aliceKey })).statusCode).toBe(409);
    expect(statusOf(await fx.call('userA', 'POST', '/api/v1/sshkeys', { publicKey: 'ssh-ed25519 !!' })).code).toBe(422);
    expect((await fx.call('userB', 'POST', '/api/v1/sshkeys', { publicKey: bobKey, name: 'bob' })).statusCode).toBe(201);

    const aliceList = (await fx.call('userA', 'GET', '/api/v1/sshkeys')).json<{ items: SshKey[] }>();
    expect(aliceList.items.map((item) => item.name)).toEqual(['alice@laptop']);
    expect((await fx.call('userB', 'DELETE', `/api/v1/sshkeys/${key.id}`)).statusCode).toBe(404);
    expect((await fx.call('runner1', 'GET', '/api/v1/sshkeys')).statusCode).toBe(403);

    const temporary = await fx.call('userA', 'POST', '/api/v1/sshkeys', { publicKey: ed25519Line('old'), name: 'old' });
    expect((await fx.call('userA', 'DELETE', '/api/v1/sshkeys/old')).statusCode).toBe(200);
    expect((await fx.call('userA', 'GET', '/api/v1/sshkeys')).json<{ items: SshKey[] }>().items.map((item) => item.id)).not.toContain(
      temporary.json<SshKey>().id,
    );
  });

  it("grants the runner a short-lived token bound to it and the environment for the owner's key or token", async () => {
    for (const environment of ['shared-name', environmentId]) {
      const response = await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment, publicKey: aliceKey });
      expect(response.statusCode, response.body).toBe(200);
      const grant = response.json<SshGrant>();
      expect(grant).toMatchObject({ environmentId, userId: fx.userIds.userA });
      const { payload } = await jwtVerify(grant.token, createLocalJWKSet(jwks(fx.signingKeys)), {
        audience: fx.runners.r1.metadata.id,
        issuer: 'warren',
      });
      expect(payload).toMatchObject({ env: environmentId, sub: fx.userIds.userA });
      expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(300);
    }
    const byPassword = await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: 'shared-name', password: fx.tokens.userA });
    expect(byPassword.statusCode, byPassword.body).toBe(200);
    expect(decodeJwt(byPassword.json<SshGrant>().token).env).toBe(environmentId);
  });

  it("refuses another user's key or token, other runners, users, and environments not Running", async () => {
    // Bob's key and token, with Alice's environment id: refused.
    expect((await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, publicKey: bobKey })).statusCode).toBe(
      403,
    );
    expect(
      (await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, password: fx.tokens.userB })).statusCode,
    ).toBe(403);
    // Bob's key with the shared name finds Bob's own environment, which is not Running.
    expect((await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: 'shared-name', publicKey: bobKey })).statusCode).toBe(
      409,
    );
    // Unregistered key, bad password, other runner, a user calling, no credentials.
    expect(
      (await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, publicKey: ed25519Line('x') })).statusCode,
    ).toBe(403);
    expect(
      (await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, password: 'wrn_nope' })).statusCode,
    ).toBe(401);
    expect(
      (await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, password: fx.tokens.runner1 })).statusCode,
    ).toBe(401);
    expect(
      (await fx.call('runner2', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, publicKey: aliceKey })).statusCode,
    ).toBe(403);
    expect((await fx.call('userA', 'POST', '/api/v1/ssh/authorize', { environment: environmentId, publicKey: aliceKey })).statusCode).toBe(
      403,
    );
    expect((await fx.call('runner1', 'POST', '/api/v1/ssh/authorize', { environment: environmentId })).statusCode).toBe(422);
  });
});
