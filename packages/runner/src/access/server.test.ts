import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { type AccessGrant, ApiError } from '@warren/api';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeBackend } from '../environment/index.js';
import { createAccessVerifier } from './auth.js';
import { execInEnvironment, followLogs } from './client.js';
import { type AccessServer, startAccessServer } from './server.js';

function sink() {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      callback();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

describe('access API', () => {
  let server: AccessServer;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  let directory: string;
  const backend = new FakeBackend();

  async function grant(
    options: { environmentId?: string; audience?: string; expiresIn?: string | number; claimEnv?: string } = {},
  ): Promise<AccessGrant> {
    const environmentId = options.environmentId ?? 'env-1';
    const token = await new SignJWT({ env: options.claimEnv ?? environmentId })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer('warren')
      .setSubject('user-1')
      .setAudience(options.audience ?? 'runner-1')
      .setIssuedAt()
      .setExpirationTime(options.expiresIn ?? '5m')
      .sign(privateKey);
    return { token, expiresTime: new Date().toISOString(), endpoint: server.url, environmentId };
  }

  beforeAll(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA' };
    directory = await mkdtemp(join(tmpdir(), 'warren-access-'));
    backend.logPath = join(directory, 'lifecycle.log');
    backend.host.set('env-1', { contentReady: true, container: 'running', starts: 1, createDone: true, createRuns: 1, postStartRuns: 1 });
    server = await startAccessServer({
      host: '127.0.0.1',
      port: 0,
      backend,
      followIntervalMs: 10,
      verify: createAccessVerifier({ server: 'http://unused', runnerId: () => 'runner-1', keys: createLocalJWKSet({ keys: [jwk] }) }),
    });
  });

  afterAll(async () => {
    await server.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('runs a command with stdout and stderr on separate channels and passes the exit code through', async () => {
    const stdout = sink();
    const stderr = sink();
    const code = await execInEnvironment(await grant(), ['exit', '7'], { stdout: stdout.stream, stderr: stderr.stream });
    expect(code).toBe(7);
    expect(stderr.text()).toBe('exiting 7\n');
    expect(stdout.text()).toBe('');

    const out = sink();
    const err = sink();
    expect(await execInEnvironment(await grant(), ['echo', 'hello', 'world'], { stdout: out.stream, stderr: err.stream })).toBe(0);
    expect(out.text()).toBe('hello world\n');
    expect(err.text()).toBe('');
  });

  it('forwards stdin and its end', async () => {
    const stdin = new PassThrough();
    const stdout = sink();
    const pending = execInEnvironment(await grant(), ['cat'], { stdin, stdout: stdout.stream, stderr: sink().stream });
    stdin.write('line one\n');
    stdin.end('line two\n');
    expect(await pending).toBe(0);
    expect(stdout.text()).toBe('line one\nline two\n');
  });

  it('refuses an expired token with a 401 Status', async () => {
    const expired = await grant({ expiresIn: Math.floor(Date.now() / 1000) - 60 });
    const error = await execInEnvironment(expired, ['echo'], { stdout: sink().stream, stderr: sink().stream }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe(401);
    expect((error as ApiError).message).toMatch(/expired/);
  });

  it('refuses a token for another environment or another runner with 403', async () => {
    const otherEnvironment = await grant({ claimEnv: 'env-2' });
    const first = await execInEnvironment(otherEnvironment, ['echo'], { stdout: sink().stream, stderr: sink().stream }).catch(
      (caught: unknown) => caught,
    );
    expect((first as ApiError).code).toBe(403);
    const otherRunner = await grant({ audience: 'runner-2' });
    const second = await followLogs(otherRunner, { write: () => {} }).catch((caught: unknown) => caught);
    expect((second as ApiError).code).toBe(403);
  });

  it('refuses a request without a token with 401', async () => {
    const response = await fetch(`${server.url}/v1/environments/env-1/logs`);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ kind: 'Status', reason: 'Unauthorized' });
  });

  it('reports an environment that is not running as a 409 error', async () => {
    const error = await execInEnvironment(await grant({ environmentId: 'env-stopped' }), ['echo'], {
      stdout: sink().stream,
      stderr: sink().stream,
    }).catch((caught: unknown) => caught);
    expect((error as ApiError).reason).toBe('EnvironmentNotRunning');
  });

  it('serves the lifecycle log and follows appended output', async () => {
    await writeFile(backend.logPath, 'first\n');
    let text = '';
    await followLogs(await grant(), { write: (chunk) => (text += chunk) });
    expect(text).toBe('first\n');

    const controller = new AbortController();
    let followed = '';
    const following = followLogs(await grant(), { follow: true, signal: controller.signal, write: (chunk) => (followed += chunk) });
    for (let attempt = 0; attempt < 200 && followed !== 'first\n'; attempt++) await new Promise((resolve) => setTimeout(resolve, 5));
    await appendFile(backend.logPath, 'second\n');
    for (let attempt = 0; attempt < 200 && !followed.includes('second'); attempt++) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    await following;
    expect(followed).toBe('first\nsecond\n');
  });

  it('answers unknown paths with a 404 Status', async () => {
    const response = await fetch(`${server.url}/v1/nothing`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ kind: 'Status', code: 404 });
  });
});
