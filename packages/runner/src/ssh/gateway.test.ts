// The SSH gateway in-process: ssh2's client against a gateway whose backend runs commands on this host in a
// temporary directory. Authorization comes from a stub "server" that signs grants like the real one.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SshAuthorizeRequest, SshGrant } from '@warren/api';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair } from 'jose';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessVerifier } from '../access/index.js';
import type { EnvironmentBackend, ExecRequest, ExecSession } from '../environment/index.js';
import { type SshGateway, startSshGateway } from './gateway.js';
import { generateEd25519KeyPair, loadOrCreateHostKey, parseOneKey } from './host-key.js';

const userKey = generateEd25519KeyPair();
const otherKey = generateEd25519KeyPair();

interface Connected {
  client: ssh2.Client;
  close(): void;
}

function connect(port: number, options: { username: string; privateKey?: string; password?: string }): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.once('ready', () => resolve({ client, close: () => client.end() }));
    client.once('error', reject);
    client.connect({ host: '127.0.0.1', port, ...options, readyTimeout: 20_000 });
  });
}

function execute(client: ssh2.Client, command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, channel) => {
      if (error) return reject(error);
      let stdout = '';
      let stderr = '';
      let code = -1;
      channel.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      channel.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      channel.on('exit', (exitCode: number) => (code = exitCode));
      channel.on('close', () => resolve({ code, stdout, stderr }));
    });
  });
}

describe('SSH gateway', () => {
  let directory: string;
  let gateway: SshGateway;
  let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  /** Clock of the stub server: grants expire relative to it. */
  let serverNow = () => new Date();
  const requests: SshAuthorizeRequest[] = [];
  const activity: string[] = [];
  /** Terminal sizes the backend was given: at start, then each resize. */
  const sizes: Array<[number, number]> = [];

  /** A backend whose "environment" is this host, in `directory`. */
  const backend = {
    exec(environmentId: string, request: ExecRequest): Promise<ExecSession> {
      const child = spawn(request.argv[0]!, request.argv.slice(1), {
        cwd: request.cwd ?? directory,
        env: { ...process.env, ...Object.fromEntries((request.env ?? []).map((entry) => entry.split('=', 2) as [string, string])) },
      });
      const exit = new Promise<number>((resolve) => child.once('close', (code, signal) => resolve(code ?? (signal ? 137 : 1))));
      if (request.tty) sizes.push([request.cols ?? 0, request.rows ?? 0]);
      const resize = (cols: number, rows: number) => void sizes.push([cols, rows]);
      const signal = (number: number) => void child.kill(number);
      return Promise.resolve({
        stdin: child.stdin,
        stdout: child.stdout,
        stderr: child.stderr,
        exit,
        kill: () => child.kill('SIGKILL'),
        resize,
        signal,
      });
    },
  } as unknown as EnvironmentBackend;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'warren-ssh-'));
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'EdDSA' };
    const userPublic = userKey.public.split(' ').slice(0, 2).join(' ');
    gateway = await startSshGateway({
      host: '127.0.0.1',
      port: 0,
      hostKey: await loadOrCreateHostKey(directory),
      backend,
      // The stub server: env-1 belongs to the user of `userKey` and of the password "pat-1".
      async authorize(request): Promise<SshGrant> {
        requests.push(request);
        const allowed =
          request.environment === 'env-1' &&
          (request.password === 'pat-1' || request.publicKey?.split(' ').slice(0, 2).join(' ') === userPublic);
        if (!allowed) throw new Error('403 Forbidden');
        const issued = Math.floor(serverNow().getTime() / 1000);
        const token = await new SignJWT({ env: 'env-1' })
          .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
          .setIssuer('warren')
          .setSubject('user-1')
          .setAudience('runner-1')
          .setIssuedAt(issued)
          .setExpirationTime(issued + 300)
          .sign(privateKey);
        return { token, expiresTime: new Date((issued + 300) * 1000).toISOString(), environmentId: 'env-1', userId: 'user-1' };
      },
      verify: createAccessVerifier({ server: 'http://unused', runnerId: () => 'runner-1', keys: createLocalJWKSet({ keys: [jwk] }) }),
      onActivity: (environmentId) => activity.push(environmentId),
    });
  });

  afterAll(async () => {
    await gateway?.close();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  it('generates Ed25519 pairs that ssh2 parses back (ssh2 alone fails ~1 in 256: issues #1390, #1513)', () => {
    for (let i = 0; i < 1500; i++) {
      const pair = generateEd25519KeyPair();
      expect(parseOneKey(pair.private)).not.toBeInstanceOf(Error);
      expect(parseOneKey(pair.public)).not.toBeInstanceOf(Error);
    }
  });

  it('keeps one host key in <dataDir>/ssh/host_key with mode 0600', async () => {
    const first = await loadOrCreateHostKey(directory);
    const again = await loadOrCreateHostKey(directory);
    expect(again.publicKey).toBe(first.publicKey);
    expect(first.publicKey).toMatch(/^ssh-ed25519 AAAA/);
    const { stat } = await import('node:fs/promises');
    expect((await stat(join(directory, 'ssh', 'host_key'))).mode & 0o777).toBe(0o600);
  });

  it('delivers a signal request (RFC 4254 §6.9) to the command', async () => {
    const connection = await connect(gateway.port, { username: 'env-1', privateKey: userKey.private });
    try {
      const result = await new Promise<{ code: number; stdout: string }>((resolve, reject) => {
        connection.client.exec(`trap 'echo got-usr1; exit 3' USR1; echo ready; while :; do sleep 0.05; done`, (error, channel) => {
          if (error) return reject(error);
          let stdout = '';
          let code = -1;
          channel.on('data', (chunk: Buffer) => {
            stdout += chunk.toString();
            if (stdout === 'ready\n') channel.signal('USR1');
          });
          channel.stderr.resume();
          channel.on('exit', (exitCode: number) => (code = exitCode));
          channel.on('close', () => resolve({ code, stdout }));
        });
      });
      expect(result).toEqual({ code: 3, stdout: 'ready\ngot-usr1\n' });
    } finally {
      connection.close();
    }
  });

  it('logs in with a key the server vouches for, runs a command and passes its exit status', async () => {
    const connection = await connect(gateway.port, { username: 'env-1', privateKey: userKey.private });
    try {
      const result = await execute(connection.client, 'echo out; echo err >&2; exit 7');
      expect(result).toEqual({ code: 7, stdout: 'out\n', stderr: 'err\n' });
    } finally {
      connection.close();
    }
    expect(requests.at(-1)).toMatchObject({ environment: 'env-1', publicKey: expect.stringMatching(/^ssh-ed25519 /) as unknown });
    expect(activity).toContain('env-1');
  });

  it('starts a shell on a pty of the requested size and passes window changes on', async () => {
    const connection = await connect(gateway.port, { username: 'env-1', privateKey: userKey.private });
    try {
      const output = await new Promise<string>((resolve, reject) => {
        connection.client.shell({ cols: 100, rows: 30, term: 'xterm' }, (error, channel) => {
          if (error) return reject(error);
          let text = '';
          channel.on('data', (chunk: Buffer) => {
            text += chunk.toString();
            if (text.includes('started')) {
              channel.setWindow(40, 120, 0, 0);
              channel.end('exit 0\n');
            }
          });
          channel.on('close', () => resolve(text));
          channel.write('echo started\n');
        });
      });
      expect(output).toContain('started');
    } finally {
      connection.close();
    }
    expect(sizes[0]).toEqual([100, 30]);
    expect(sizes).toContainEqual([120, 40]);
  });

  it('logs in with a personal access token as password', async () => {
    const connection = await connect(gateway.port, { username: 'env-1', password: 'pat-1' });
    try {
      expect((await execute(connection.client, 'echo ok')).stdout).toBe('ok\n');
    } finally {
      connection.close();
    }
  });

  it('refuses a key, a password or an environment the server does not vouch for', async () => {
    await expect(connect(gateway.port, { username: 'env-1', privateKey: otherKey.private })).rejects.toThrow(
      /authentication methods failed/,
    );
    await expect(connect(gateway.port, { username: 'env-1', password: 'wrong' })).rejects.toThrow(/authentication methods failed/);
    await expect(connect(gateway.port, { username: 'env-2', privateKey: userKey.private })).rejects.toThrow(
      /authentication methods failed/,
    );
  });

  it('refuses an expired grant', async () => {
    serverNow = () => new Date(Date.now() - 3600_000); // the stub server signs with a clock an hour behind
    try {
      await expect(connect(gateway.port, { username: 'env-1', password: 'pat-1' })).rejects.toThrow(/authentication methods failed/);
    } finally {
      serverNow = () => new Date();
    }
  });

  it('serves SFTP: upload, stat, list, download, rename, remove', async () => {
    const connection = await connect(gateway.port, { username: 'env-1', privateKey: userKey.private });
    try {
      const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) =>
        connection.client.sftp((error, wrapper) => (error ? reject(error) : resolve(wrapper))),
      );
      const payload = Buffer.alloc(3 * 1024 * 1024 + 17, 'x');
      payload.write('head', 0);
      payload.write('tail', payload.length - 4);
      const local = join(directory, 'local.bin');
      await writeFile(local, payload);
      const remote = join(directory, 'remote.bin');
      await new Promise<void>((resolve, reject) => sftp.fastPut(local, remote, (error) => (error ? reject(error) : resolve())));
      expect((await readFile(remote)).equals(payload)).toBe(true);
      const stats = await new Promise<ssh2.Stats>((resolve, reject) =>
        sftp.stat(remote, (error, value) => (error ? reject(error) : resolve(value))),
      );
      expect(stats.size).toBe(payload.length);
      expect(stats.isFile()).toBe(true);
      const listing = await new Promise<ssh2.FileEntryWithStats[]>((resolve, reject) =>
        sftp.readdir(directory, (error, list) => (error ? reject(error) : resolve(list))),
      );
      expect(listing.map((entry) => entry.filename)).toContain('remote.bin');
      const back = join(directory, 'back.bin');
      await new Promise<void>((resolve, reject) => sftp.fastGet(remote, back, (error) => (error ? reject(error) : resolve())));
      expect((await readFile(back)).equals(payload)).toBe(true);
      await new Promise<void>((resolve, reject) => sftp.rename(remote, `${remote}.2`, (error) => (error ? reject(error) : resolve())));
      await new Promise<void>((resolve, reject) => sftp.unlink(`${remote}.2`, (error) => (error ? reject(error) : resolve())));
      const missing = await new Promise<unknown>((resolve) => sftp.stat(`${remote}.2`, (error) => resolve(error)));
      expect(missing).toMatchObject({ code: 2 });
    } finally {
      connection.close();
    }
  });
});
