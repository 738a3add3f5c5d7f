// The terminal route of the access API over a real pty (node-pty) running /bin/sh on this host in place of
// an environment: input and output, resize, reconnect with scrollback, grace expiry, and token checks.
import { Writable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { type AccessGrant, ApiError } from '@warren/api';
import { silentLogger } from '@warren/base';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EnvironmentBackend, EnvironmentNotRunningError, type ExecRequest } from '../environment/index.js';
import { loadNodePty, spawnUnderPty } from '../linux/index.js';
import { createAccessVerifier } from './auth.js';
import { type AccessServer, startAccessServer } from './server.js';
import { ScrollbackBuffer } from './terminal.js';
import { type TerminalConnection, openTerminal } from './terminal-client.js';

function sink() {
  const chunks: Buffer[] = [];
  let waiters: Array<() => void> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk);
      for (const waiter of waiters.splice(0)) waiter();
      callback();
    },
  });
  const bytes = () => Buffer.concat(chunks);
  return {
    stream,
    bytes,
    text: () => bytes().toString('utf8'),
    /** Resolves once the output matches (polls on each write; the test's own timeout bounds it). */
    async until(pattern: RegExp): Promise<string> {
      while (!pattern.test(bytes().toString('utf8'))) await new Promise<void>((resolve) => waiters.push(resolve));
      waiters = [];
      return bytes().toString('utf8');
    },
  };
}

describe('terminal API', () => {
  let server: AccessServer;
  let shortGrace: AccessServer;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  const execs: ExecRequest[] = [];
  const activity: string[] = [];

  // A host shell stands in for the environment's login shell (the Linux backend runs it through runc).
  const backend = {
    async exec(environmentId: string, request: ExecRequest) {
      if (environmentId !== 'env-1') throw new EnvironmentNotRunningError(environmentId);
      execs.push(request);
      const pty = await loadNodePty(silentLogger);
      if (!pty) throw new Error('node-pty is not available');
      return spawnUnderPty(pty, ['/bin/sh'], {
        cols: request.cols ?? 80,
        rows: request.rows ?? 24,
        env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', PS1: '$ ', HOME: '/tmp' },
        logger: silentLogger,
      });
    },
  } as unknown as EnvironmentBackend;

  async function grant(
    target: AccessServer,
    options: { environmentId?: string; user?: string; expiresIn?: string | number; claimEnv?: string } = {},
  ): Promise<AccessGrant> {
    const environmentId = options.environmentId ?? 'env-1';
    const token = await new SignJWT({ env: options.claimEnv ?? environmentId })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer('warren')
      .setSubject(options.user ?? 'user-a')
      .setAudience('runner-1')
      .setIssuedAt()
      .setExpirationTime(options.expiresIn ?? '5m')
      .sign(privateKey);
    return { token, expiresTime: new Date().toISOString(), endpoint: target.url, environmentId };
  }

  beforeAll(async () => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA' };
    const verify = createAccessVerifier({ server: 'http://unused', runnerId: () => 'runner-1', keys: createLocalJWKSet({ keys: [jwk] }) });
    server = await startAccessServer({ host: '127.0.0.1', port: 0, backend, verify, onActivity: (id) => activity.push(id) });
    shortGrace = await startAccessServer({ host: '127.0.0.1', port: 0, backend, verify, terminal: { graceMs: 50 } });
  });

  afterAll(async () => {
    await server?.close();
    await shortGrace?.close();
  });

  it('runs a login shell, takes input, resizes, and replays at least 256 KiB of scrollback on reconnect', async () => {
    const stdin = new PassThrough();
    const out = sink();
    const first = await openTerminal(await grant(server), { stdin, stdout: out.stream, cols: 100, rows: 30 });
    expect(first).toMatchObject({ resumed: false, replayBytes: 0 });
    expect(first.session).toMatch(/^[0-9a-f-]{36}$/);
    expect(execs.at(-1)).toMatchObject({ tty: true, cols: 100, rows: 30 });

    stdin.write('echo "hello $((6 * 7))"\n');
    await out.until(/hello 42/);
    expect(activity).toContain('env-1');
    stdin.write('stty size\n');
    await out.until(/30 100/);
    first.resize(120, 40);
    stdin.write('stty size\n');
    await out.until(/40 120/);

    // More than 256 KiB of output, then a marker; then the socket drops.
    stdin.write("head -c 300000 /dev/zero | tr '\\0' x; echo; echo big-$((1 + 1))-done\n");
    await out.until(/big-2-done\r?\n/);
    first.close();
    expect(await first.done).toEqual({ kind: 'detached', closeCode: 1000 });

    const again = sink();
    const stdin2 = new PassThrough();
    const second = await openTerminal(await grant(server), {
      stdin: stdin2,
      stdout: again.stream,
      session: first.session,
      cols: 90,
      rows: 20,
    });
    expect(second).toMatchObject({ session: first.session, resumed: true });
    expect(second.replayBytes).toBeGreaterThanOrEqual(256 * 1024);
    await again.until(/big-2-done/);
    expect(again.bytes().length).toBeGreaterThanOrEqual(second.replayBytes);
    // Live again, with the size asked for on reconnect.
    stdin2.write('stty size; exit 3\n');
    await again.until(/20 90/);
    expect(await second.done).toEqual({ kind: 'exit', code: 3 });

    // The session ended with its shell: it cannot be resumed.
    await expect(openTerminal(await grant(server), { stdout: sink().stream, session: first.session })).rejects.toMatchObject({
      code: 404,
      reason: 'TerminalSessionNotFound',
    });
  });

  it('a second connection takes the session over; terminate ends it', async () => {
    const first = await openTerminal(await grant(server), { stdout: sink().stream });
    const out = sink();
    const stdin = new PassThrough();
    const second = await openTerminal(await grant(server), { stdin, stdout: out.stream, session: first.session });
    expect(await first.done).toMatchObject({ kind: 'detached', closeCode: 4001 });
    stdin.write('echo taken-$((2 + 2))\n');
    await out.until(/taken-4\r?\n/);
    second.terminate();
    expect((await second.done).kind).toBe('exit');
  });

  it('ends a detached session after the grace period', async () => {
    const first = await openTerminal(await grant(shortGrace), { stdout: sink().stream });
    first.close();
    await first.done;
    let error: unknown;
    // Polls until the session is gone (the runner kills the shell 50 ms after the drop).
    for (let attempt = 0; attempt < 200 && !error; attempt++) {
      let connection: TerminalConnection | undefined;
      try {
        connection = await openTerminal(await grant(shortGrace), { stdout: sink().stream, session: first.session });
      } catch (caught) {
        error = caught;
      }
      connection?.close();
      if (connection) await connection.done;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(error).toMatchObject({ code: 404, reason: 'TerminalSessionNotFound' });
  });

  it('refuses expired tokens, tokens for another environment, and sessions of another user', async () => {
    await expect(
      openTerminal(await grant(server, { expiresIn: Math.floor(Date.now() / 1000) - 60 }), { stdout: sink().stream }),
    ).rejects.toMatchObject({ code: 401 });
    await expect(openTerminal(await grant(server, { claimEnv: 'env-2' }), { stdout: sink().stream })).rejects.toMatchObject({ code: 403 });
    await expect(openTerminal({ ...(await grant(server)), token: '' }, { stdout: sink().stream })).rejects.toBeInstanceOf(ApiError);

    const mine = await openTerminal(await grant(server, { user: 'user-a' }), { stdout: sink().stream });
    await expect(
      openTerminal(await grant(server, { user: 'user-b' }), { stdout: sink().stream, session: mine.session }),
    ).rejects.toMatchObject({
      code: 404,
      reason: 'TerminalSessionNotFound',
    });
    await expect(openTerminal(await grant(server, { environmentId: 'env-2' }), { stdout: sink().stream })).rejects.toMatchObject({
      code: 409,
    });
    mine.terminate();
    await mine.done;
  });
});

describe('ScrollbackBuffer', () => {
  it('keeps the last capacity bytes across chunk boundaries', () => {
    const buffer = new ScrollbackBuffer(10);
    buffer.append(Buffer.from('abcdef'));
    buffer.append(Buffer.from('ghij'));
    expect(buffer.snapshot().toString()).toBe('abcdefghij');
    buffer.append(Buffer.from('kl'));
    expect(buffer.snapshot().toString()).toBe('cdefghijkl');
    buffer.append(Buffer.from('0123456789abc'));
    expect(buffer.snapshot().toString()).toBe('3456789abc');
    expect(buffer.length).toBe(10);
  });
});
