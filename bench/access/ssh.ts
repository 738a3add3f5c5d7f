// The access benchmark's SSH part: the exec round trip with OpenSSH and ssh2 beside the access API exec,
// many concurrent SSH sessions on one runner, and their report.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { exec, execInEnvironment } from '@warren/runner';
import ssh2 from 'ssh2';
import type * as HostKey from '../../packages/runner/dist/ssh/host-key.js';
import { type Figures, SESSIONS, SSH_RUNS, TARGETS, f, load, mark, percentile, run, sink } from './common.js';

/** Connects an ssh2 client. */
function sshConnect(port: number, username: string, privateKey: string): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    // As OpenSSH does for interactive sessions (packet_set_interactive → TCP_NODELAY): no Nagle delay on requests.
    client.once('ready', () => resolve(client.setNoDelay(true)));
    client.once('error', reject);
    client.connect({ host: '127.0.0.1', port, username, privateKey, readyTimeout: 120_000, keepaliveInterval: 0 });
  });
}

/** Runs `command` on an open ssh2 connection. @returns its exit code and stdout. */
function sshExec(client: ssh2.Client, command: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, channel) => {
      if (error) return reject(error);
      let stdout = '';
      let code = -1;
      channel.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      channel.stderr.resume();
      channel.on('exit', (exitCode: number | null) => (code = exitCode ?? -1));
      channel.on('close', () => resolve({ code, stdout }));
    });
  });
}

/** How to reach the runner's SSH gateway as the environment `bench-access`. */
export interface SshClientSetup {
  sshPort: number;
  /** The client's private key (OpenSSH format), whose public key is registered with the server. */
  privateKey: string;
  /** `ssh … true` with that key, host key checks off (a bench on loopback). */
  sshArgv: string[];
}

/**
 * Makes a client key pair in a temp dir (removed by a step pushed onto `cleanups`), registers its public key
 * and builds the OpenSSH command line.
 */
export async function prepareSshClient(
  admin: WarrenClient,
  sshPort: number,
  cleanups: Array<() => Promise<unknown>>,
): Promise<SshClientSetup> {
  const clientDir = await mkdtemp(join(tmpdir(), 'warren-bench-access-client-'));
  cleanups.push(() => rm(clientDir, { recursive: true, force: true }));
  const { generateEd25519KeyPair } = await load<typeof HostKey>('packages/runner/dist/ssh/host-key.js');
  const pair = generateEd25519KeyPair('bench@access');
  const keyFile = join(clientDir, 'id_ed25519');
  await writeFile(keyFile, pair.private, { mode: 0o600 });
  await admin.request('POST', '/api/v1/sshkeys', { publicKey: pair.public });
  // A bench on loopback: the host key is not checked (the tests check the published one).
  const sshArgv = [
    'ssh',
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'IdentityAgent=none',
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-i',
    keyFile,
    '-p',
    String(sshPort),
    '-l',
    'bench-access',
    '127.0.0.1',
    'true',
  ];
  return { sshPort, privateKey: pair.private, sshArgv };
}

/** Measures the exec round trip: OpenSSH, ssh2 cold and warm, and the access API exec baseline, into `figures`. */
export async function measureSshExec(figures: Figures, admin: WarrenClient, id: string, setup: SshClientSetup): Promise<void> {
  const { sshPort, sshArgv, privateKey } = setup;
  await exec(sshArgv, { timeoutMs: 60_000 });
  for (let index = 0; index < SSH_RUNS; index++) {
    const t0 = performance.now();
    await exec(sshArgv, { timeoutMs: 60_000 });
    figures.openssh.push(performance.now() - t0);
  }
  const warm = await sshConnect(sshPort, 'bench-access', privateKey);
  await sshExec(warm, 'true');
  for (let index = 0; index < SSH_RUNS; index++) {
    const t0 = performance.now();
    const { code } = await sshExec(warm, 'true');
    if (code !== 0) throw new Error(`ssh2 exec exited with ${code}`);
    figures.ssh2Warm.push(performance.now() - t0);
  }
  warm.end();
  for (let index = 0; index < SSH_RUNS; index++) {
    const t0 = performance.now();
    const client = await sshConnect(sshPort, 'bench-access', privateKey);
    await sshExec(client, 'true');
    figures.ssh2Cold.push(performance.now() - t0);
    client.end();
  }
  // Baseline in the same run: the access API's exec (grant + WebSocket + runc exec), what the gateway runs on.
  for (let index = 0; index < SSH_RUNS; index++) {
    const t0 = performance.now();
    await execInEnvironment(await admin.createAccessGrant(id), ['true'], { stdout: sink(), stderr: sink() });
    figures.accessExec.push(performance.now() - t0);
  }
}

/** Opens {@link SESSIONS} concurrent ssh2 sessions, holds them until all run, then releases them; into `figures`. */
export async function measureSessions(figures: Figures, admin: WarrenClient, id: string, setup: SshClientSetup): Promise<void> {
  const { sshPort, privateKey } = setup;
  // Every session holds its connection until all are open (the command waits for a file the bench makes last).
  const release = `/tmp/bench-release-${randomBytes(3).toString('hex')}`;
  const t0 = performance.now();
  const opened: ssh2.Client[] = [];
  let running = 0;
  let allRunning: () => void = () => {};
  const everyoneRunning = new Promise<void>((resolve) => (allRunning = resolve));
  const sessions = Array.from({ length: SESSIONS }, async (_, index) => {
    const started = performance.now();
    let client: ssh2.Client | undefined;
    try {
      client = await sshConnect(sshPort, 'bench-access', privateKey);
      opened.push(client);
      const result = await new Promise<{ code: number; stdout: string }>((resolve, reject) => {
        client!.exec(`echo up; while [ ! -e ${release} ]; do sleep 0.2; done; echo done-${index}`, (error, channel) => {
          if (error) return reject(error);
          let stdout = '';
          let code = -1;
          let counted = false;
          channel.on('data', (chunk: Buffer) => {
            stdout += chunk.toString();
            if (!counted && stdout.includes('up\n')) {
              counted = true;
              if (++running === SESSIONS) allRunning();
            }
          });
          channel.stderr.resume();
          channel.on('exit', (exitCode: number | null) => (code = exitCode ?? -1));
          channel.on('close', () => resolve({ code, stdout }));
        });
      });
      if (result.code !== 0 || !result.stdout.includes(`done-${index}`))
        throw new Error(`session ${index}: exit ${result.code}, output ${JSON.stringify(result.stdout)}`);
      figures.sessions.ok++;
      figures.sessions.perSession.push(performance.now() - started);
    } catch (error) {
      figures.sessions.failed++;
      figures.sessions.firstError ??= error instanceof Error ? error.message : String(error);
      if (++running === SESSIONS) allRunning();
    } finally {
      client?.end();
    }
  });
  await Promise.race([everyoneRunning, sleep(180_000)]);
  const allUpMs = performance.now() - t0;
  try {
    await run(admin, id, ['touch', release]);
  } catch (error) {
    // Seen with 200 sessions: the access API exec itself fails (exit 255) while they are held; end them instead.
    figures.sessions.firstError ??= `release failed: ${error instanceof Error ? error.message : String(error)}`;
    for (const client of opened) client.end();
  }
  await Promise.all(sessions);
  figures.sessions.wallMs = performance.now() - t0;
  console.log(`${SESSIONS} sessions: all running (or failed) after ${allUpMs.toFixed(0)} ms`);
}

/** Prints the SSH exec round trips (p50, p95) and the target. */
export function reportSsh(figures: Figures): void {
  const row = (name: string, values: number[], target?: number) =>
    console.log(
      `${name.padEnd(52)} ${f(percentile(values, 50)).padStart(8)} ${f(percentile(values, 95)).padStart(8)}${target !== undefined ? `    p50 ≤ ${target} ms: ${mark(percentile(values, 50) <= target)}` : ''}`,
    );
  console.log(`\nSSH exec round trip (${SSH_RUNS} runs)                       p50 ms   p95 ms`);
  row('OpenSSH `ssh -p … true` (process, handshake, exec)', figures.openssh, TARGETS.sshExecP50Ms);
  row('ssh2: connect + auth + exec `true`', figures.ssh2Cold);
  row('ssh2: exec `true` on a warm connection', figures.ssh2Warm);
  row('baseline: access API exec `true` (grant + ws)', figures.accessExec);
}

/** Prints the concurrent sessions' outcome. */
export function reportSessions(figures: Figures): void {
  const sessions = figures.sessions;
  console.log(`\n${SESSIONS} concurrent SSH sessions (ssh2, one connection each, all held open until every one runs)`);
  console.log(
    `  succeeded ${sessions.ok}/${SESSIONS}, failed ${sessions.failed}; wall ${f(sessions.wallMs / 1000, 2)} s; per session p50 ${f(percentile(sessions.perSession, 50) / 1000, 2)} s, p95 ${f(percentile(sessions.perSession, 95) / 1000, 2)} s`,
  );
  if (sessions.firstError) console.log(`  first error: ${sessions.firstError}`);
}
