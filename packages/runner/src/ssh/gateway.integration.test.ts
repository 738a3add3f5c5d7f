// The SSH gateway end to end with the real OpenSSH client (ssh, scp, sftp, ssh -L) against a real environment:
// control plane (app + PGlite + controllers) and startRunner with the Linux backend in one process, a repository
// with devcontainer.json on a git server and the Debian test image in a registry. Users A and B register keys with
// the server; the gateway asks the server about every login.
// Needs root, runc, ip, cc, git, docker-registry, skopeo, openssh-client and the cached test images.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Environment, SSH_HOST_KEY_INFO } from '@warren/api';
import { sleep } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, freePort, startHarness, waitForPhase } from '../../../../e2e/harness/index.js';
import { generateEd25519KeyPair } from './host-key.js';

/** Own slot range: above the other suites (1000..13000, 13000..15000) and the network tests (15000..16000). */
const SLOT_OFFSET = 16_100 + (process.pid % 25) * 10;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, feeding `input` on stdin. */
function run(command: string, args: string[], input = ''): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Resolves once `child`'s stdout has shown `text` (rejects if the process ends first). */
function waitForOutput(child: ChildProcess, text: string, seen: { output: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (seen.output.includes(text)) {
        child.stdout?.off('data', check);
        child.off('close', closed);
        resolve();
      }
    };
    const closed = () => reject(new Error(`process ended before printing ${JSON.stringify(text)}; output: ${seen.output}`));
    child.stdout?.on('data', check);
    child.once('close', closed);
    check();
  });
}

describe('SSH gateway with OpenSSH against a real environment', () => {
  let harness: HarnessWithFixtures;
  let clientDir: string;
  let sshPort: number;
  let environment: Environment;
  const keys = { alice: '', bob: '', stranger: '' };

  /** OpenSSH options shared by ssh, scp and sftp: no user config, only the given key, the published host key. */
  const common = (key: string) => [
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'IdentityAgent=none',
    '-i',
    key,
    '-o',
    `UserKnownHostsFile=${join(clientDir, 'known_hosts')}`,
    '-o',
    'HostKeyAlias=warren-runner-ssh-test',
    '-o',
    'StrictHostKeyChecking=yes',
  ];
  const ssh = (key: string, user: string, ...rest: string[]) => ['-p', String(sshPort), ...common(key), '-l', user, '127.0.0.1', ...rest];

  beforeAll(async () => {
    clientDir = await mkdtemp(join(tmpdir(), 'warren-ssh-client-'));
    harness = await startHarness({
      name: 'ssh',
      fixtures: true,
      config: { slotOffset: SLOT_OFFSET },
      runner: { sshListen: { host: '127.0.0.1', port: 0 } },
    });
    const { admin, runner, controlPlane } = harness;
    const alice = (await controlPlane.createUser('alice')).client;
    const bob = (await controlPlane.createUser('bob')).client;

    // Keys: Alice's and Bob's registered with the server, a stranger's not.
    for (const name of ['alice', 'bob', 'stranger'] as const) {
      const pair = generateEd25519KeyPair(`${name}@test`);
      keys[name] = join(clientDir, `id_${name}`);
      await writeFile(keys[name], pair.private);
      await chmod(keys[name], 0o600);
      if (name !== 'stranger') await (name === 'alice' ? alice : bob).request('POST', '/api/v1/sshkeys', { publicKey: pair.public });
    }

    // The host key as the server publishes it (no trust on first use).
    let published: { endpoint?: string; hostKey?: string } = {};
    for (let attempt = 0; attempt < 100 && !published.hostKey; attempt++) {
      const status = (await admin.get('Runner', runner.runnerId)).status;
      published = { endpoint: status.endpoints.ssh, hostKey: status.info?.[SSH_HOST_KEY_INFO] };
      if (!published.hostKey) await sleep(100);
    }
    expect(published.hostKey).toMatch(/^ssh-ed25519 AAAA/);
    sshPort = Number(published.endpoint?.split(':').pop());
    await writeFile(join(clientDir, 'known_hosts'), `warren-runner-ssh-test ${published.hostKey}\n`);

    const { fixtures } = harness;
    const repo = await fixtures.git.createRepo(`acme/ssh${process.pid}`, {
      '.devcontainer/devcontainer.json': `{
        "image": "${fixtures.images.base}",
        "containerEnv": { "GREETING": "hello" },
        "remoteEnv": { "FAREWELL": "bye-\${containerEnv:GREETING}" },
      }`,
    });
    const created = await alice.createEnvironment({ metadata: { name: 'sshbox' }, spec: { source: { git: { url: repo.url } } } });
    environment = await waitForPhase(alice, created.metadata.id, 'Running');
  });

  afterAll(async () => {
    await harness?.dispose();
    if (clientDir) await rm(clientDir, { recursive: true, force: true });
  });

  it('runs a command as remoteUser in the workspace folder with remoteEnv and passes its exit status', async () => {
    const result = await run('ssh', ssh(keys.alice, 'sshbox', 'id -un; pwd; echo "$GREETING $FAREWELL"; echo err >&2; exit 3'));
    expect(result.stderr).toBe('err\n');
    expect(result.stdout).toBe(`vscode\n/workspaces/ssh${process.pid}\nhello bye-hello\n`);
    expect(result.code).toBe(3);
    // The environment's id works as user name too.
    expect((await run('ssh', ssh(keys.alice, environment.metadata.id, 'echo by-id'))).stdout).toBe('by-id\n');
  });

  it('gives an interactive shell on a pty: commands, Ctrl-C and the exit status', async () => {
    const child = spawn('ssh', ['-tt', ...ssh(keys.alice, 'sshbox')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const seen = { output: '' };
    child.stdout.on('data', (chunk: Buffer) => (seen.output += chunk.toString()));
    const closed = new Promise<number>((resolve) => child.once('close', (code) => resolve(code ?? -1)));
    child.stdin.write('[ -t 0 ] && echo "tty-$((6*7))"; echo "ready"; sleep 300\n');
    await waitForOutput(child, 'tty-42', seen);
    await waitForOutput(child, '\nready', seen);
    // Ctrl-C: the terminal echoes "^C" when it signals the foreground process (and flushes pending input), so
    // the next line is sent only after that.
    child.stdin.write('\x03');
    await waitForOutput(child, '^C', seen);
    child.stdin.write('echo "after-$?"\n');
    await waitForOutput(child, 'after-130', seen);
    child.stdin.write('exit 5\n');
    expect(await closed).toBe(5);
  });

  it('copies files both ways with scp and sftp', async () => {
    const local = join(clientDir, 'upload.bin');
    const payload = Buffer.concat([Buffer.from('warren-scp\n'), Buffer.alloc(300_000, 7)]);
    await writeFile(local, payload);
    const up = await run('scp', ['-P', String(sshPort), ...common(keys.alice), local, 'sshbox@127.0.0.1:uploaded.bin']);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const check = await run(
      'ssh',
      ssh(keys.alice, 'sshbox', 'ls -l uploaded.bin; stat -c %s uploaded.bin; id -un; stat -c %U uploaded.bin'),
    );
    expect(check.stdout.split('\n').slice(1, 4)).toEqual([String(payload.length), 'vscode', 'vscode']);
    const back = join(clientDir, 'back.bin');
    expect((await run('scp', ['-P', String(sshPort), ...common(keys.alice), 'sshbox@127.0.0.1:uploaded.bin', back])).code).toBe(0);
    expect((await readFile(back)).equals(payload)).toBe(true);

    const batch = join(clientDir, 'batch');
    const fromSftp = join(clientDir, 'from-sftp.bin');
    await writeFile(
      batch,
      [
        `put ${local} via-sftp.bin`,
        'ls -l via-sftp.bin',
        `get via-sftp.bin ${fromSftp}`,
        'mkdir made-by-sftp',
        'rmdir made-by-sftp',
        'rm via-sftp.bin',
        '',
      ].join('\n'),
    );
    const sftp = await run('sftp', ['-P', String(sshPort), ...common(keys.alice), '-b', batch, 'sshbox@127.0.0.1']);
    expect(sftp.stderr).toBe('');
    expect(sftp.code).toBe(0);
    expect(sftp.stdout).toMatch(/-rw-r--r-- .* via-sftp\.bin/);
    expect((await readFile(fromSftp)).equals(payload)).toBe(true);
    expect((await run('ssh', ssh(keys.alice, 'sshbox', 'ls via-sftp.bin'))).code).not.toBe(0);
  });

  it('forwards a local port to a port inside the environment (ssh -L)', async () => {
    // A server inside the environment (perl-base is Essential in Debian), detached from the ssh session.
    const serve = `perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 8765, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "hello-from-env\\n"; close $c }'`;
    const started = await run('ssh', ssh(keys.alice, 'sshbox', `nohup ${serve} >/dev/null 2>&1 </dev/null & echo started`));
    expect(started.stdout).toBe('started\n');
    const localPort = await freePort();
    const forward = spawn(
      'ssh',
      ['-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${localPort}:localhost:8765`, ...ssh(keys.alice, 'sshbox')],
      { stdio: 'ignore' },
    );
    try {
      let answer = '';
      for (let attempt = 0; attempt < 200 && !answer.includes('hello-from-env'); attempt++) {
        answer = await new Promise<string>((resolve) => {
          let data = '';
          const socket = createConnection({ host: '127.0.0.1', port: localPort });
          socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
          socket.on('close', () => resolve(data));
          socket.on('error', () => resolve(''));
        });
        if (!answer) await sleep(50);
      }
      expect(answer).toBe('hello-from-env\n');
    } finally {
      forward.kill();
    }
  });

  it("forwards a local port to a server bound to the environment's loopback only (ssh -L)", async () => {
    const serve = `perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8766, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c "hello-from-loopback\\n"; close $c }'`;
    const started = await run('ssh', ssh(keys.alice, 'sshbox', `nohup ${serve} >/dev/null 2>&1 </dev/null & echo started`));
    expect(started.stdout).toBe('started\n');
    const localPort = await freePort();
    const forward = spawn(
      'ssh',
      ['-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${localPort}:localhost:8766`, ...ssh(keys.alice, 'sshbox')],
      { stdio: 'ignore' },
    );
    try {
      let answer = '';
      for (let attempt = 0; attempt < 200 && !answer.includes('hello-from-loopback'); attempt++) {
        answer = await new Promise<string>((resolve) => {
          let data = '';
          const socket = createConnection({ host: '127.0.0.1', port: localPort });
          socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
          socket.on('close', () => resolve(data));
          socket.on('error', () => resolve(''));
        });
        if (!answer) await sleep(50);
      }
      expect(answer).toBe('hello-from-loopback\n');
    } finally {
      forward.kill();
    }
  });

  it("refuses an unregistered key and another user's key, by environment name or id", async () => {
    const stranger = await run('ssh', ssh(keys.stranger, 'sshbox', 'true'));
    expect(stranger.code).toBe(255);
    expect(stranger.stderr).toMatch(/Permission denied/);
    for (const user of ['sshbox', environment.metadata.id]) {
      const other = await run('ssh', ssh(keys.bob, user, 'true'));
      expect(other.code).toBe(255);
      expect(other.stderr).toMatch(/Permission denied/);
    }
    // Alice's key works for Alice's environment only: a made-up name is refused too.
    expect((await run('ssh', ssh(keys.alice, 'nonexistent', 'true'))).code).toBe(255);
  });
});
