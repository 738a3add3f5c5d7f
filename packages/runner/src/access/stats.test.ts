// The access API's usage routes: GET /v1/environments/{id}/stats authorised by an access token like logs (refused
// without one, for another environment, 409 when not running) and GET /metrics behind the metrics token or loopback.
import type { IncomingMessage } from 'node:http';
import { type AccessGrant, ApiError } from '@warren/api';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeBackend } from '../environment/index.js';
import { createAccessVerifier } from './auth.js';
import { fetchStats } from './client.js';
import { type AccessServer, metricsAllowed, startAccessServer } from './server.js';

describe('access API stats and metrics', () => {
  let server: AccessServer;
  let open: AccessServer;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  const backend = new FakeBackend();
  const page = { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'warren_runner_reconcile_queue_depth 0\n' };

  async function grant(environmentId = 'env-1', claimEnv = environmentId): Promise<AccessGrant> {
    const token = await new SignJWT({ env: claimEnv })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer('warren')
      .setSubject('user-1')
      .setAudience('runner-1')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey);
    return { token, expiresTime: new Date().toISOString(), endpoint: server.url, environmentId };
  }

  beforeAll(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA' };
    backend.host.set('env-1', { contentReady: true, container: 'running', starts: 1, createDone: true, createRuns: 1, postStartRuns: 1 });
    backend.host.set('env-2', { contentReady: true, container: 'absent', starts: 1, createDone: true, createRuns: 1, postStartRuns: 1 });
    const verify = createAccessVerifier({ server: 'http://unused', runnerId: () => 'runner-1', keys: createLocalJWKSet({ keys: [jwk] }) });
    const render = () => Promise.resolve(page);
    server = await startAccessServer({ host: '127.0.0.1', port: 0, backend, verify, metrics: { render, token: 's3cret' } });
    open = await startAccessServer({ host: '127.0.0.1', port: 0, backend, verify, metrics: { render } });
  });

  afterAll(async () => {
    await server.close();
    await open.close();
  });

  it('returns the usage of the granted environment', async () => {
    const stats = await fetchStats(await grant());
    expect(stats).toMatchObject({ environmentId: 'env-1', cpuUsageSeconds: 1.5, memoryLimitBytes: 512 * 1024 * 1024, pids: 3 });
    expect(Number.isNaN(Date.parse(stats.sampleTime))).toBe(false);
  });

  it('refuses a request without a token, with a token for another environment, and answers 409 when not running', async () => {
    const anonymous = await fetch(`${server.url}/v1/environments/env-1/stats`);
    expect(anonymous.status).toBe(401);
    await expect(fetchStats({ ...(await grant('env-1', 'env-9')) })).rejects.toMatchObject({ code: 403 });
    const stopped = fetchStats(await grant('env-2'));
    await expect(stopped).rejects.toBeInstanceOf(ApiError);
    await expect(stopped).rejects.toMatchObject({ code: 409, reason: 'EnvironmentNotRunning' });
  });

  it('serves /metrics with the metrics token only, when one is configured', async () => {
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer wrong!' } })).status).toBe(401);
    // An access token of a user is not a metrics token.
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${(await grant()).token}` } })).status).toBe(401);
    const response = await fetch(`${server.url}/metrics`, { headers: { authorization: 'Bearer s3cret' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(page.contentType);
    expect(await response.text()).toBe(page.body);
  });

  it('serves /metrics to loopback clients without a configured token, and refuses other peers', async () => {
    expect((await fetch(`${open.url}/metrics`)).status).toBe(200);
    const from = (remoteAddress: string) => ({ headers: {}, socket: { remoteAddress } }) as unknown as IncomingMessage;
    expect(() => metricsAllowed(from('::ffff:127.0.0.1'), undefined)).not.toThrow();
    expect(() => metricsAllowed(from('::1'), undefined)).not.toThrow();
    expect(() => metricsAllowed(from('10.88.0.6'), undefined)).toThrow(/loopback clients only/);
    expect(() => metricsAllowed(from('192.168.1.2'), undefined)).toThrow(expect.objectContaining({ code: 403 }) as Error);
  });
});
