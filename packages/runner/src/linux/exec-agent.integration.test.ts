// The exec agent binary on the host (no container): compiled with cc -static, run as a child subreaper with its
// socket in a temporary directory, driven through execViaAgent and through raw protocol bytes.
// Needs root (it switches to uid 65534) and cc with a static libc (libc6-dev).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AgentConnectionKind,
  type AgentExecRequest,
  ExecAgentUnavailableError,
  connectionHeader,
  encodeExecRequest,
  ensureExecAgent,
  execViaAgent,
} from './exec-agent.js';
import { collect, outputOf } from './testing.js';

const ENV = ['PATH=/usr/local/bin:/usr/bin:/bin', 'LANG=C'];

async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Children of `pid` in state Z (proc(5) stat fields 3 and 4). */
async function zombieChildren(pid: number): Promise<number> {
  let count = 0;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const text = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' && Number(fields[1]) === pid) count++;
  }
  return count;
}

describe('exec agent (host process)', () => {
  let dir: string;
  let binary: string;
  const agents: ChildProcess[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-agent-'));
    binary = await ensureExecAgent(join(dir, 'bin'));
  });

  afterEach(() => {
    for (const agent of agents.splice(0)) if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  let serial = 0;
  async function startAgent(
    command: string[] = [],
  ): Promise<{ agent: ChildProcess; socket: string; output: () => string; exited: Promise<number | null> }> {
    const socket = join(dir, `a${++serial}.sock`);
    const agent = spawn(binary, ['--socket', socket, ...(command.length ? ['--', ...command] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    agents.push(agent);
    let output = '';
    agent.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    agent.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
    await waitFor(() => existsSync(socket));
    return { agent, socket, output: () => output, exited };
  }

  const request = (argv: string[], change: Partial<AgentExecRequest> = {}): AgentExecRequest => ({
    uid: 0,
    gid: 0,
    additionalGids: [],
    cwd: '/',
    argv,
    env: ENV,
    ...change,
  });

  it('runs a command as the given user, groups, cwd and env with separate stdout and stderr', async () => {
    const { socket } = await startAgent();
    const session = await execViaAgent(
      socket,
      request(['sh', '-c', 'id -u; id -g; id -G; pwd; echo "$GREETING"; echo to-stderr >&2; grep -E "^Cap(Prm|Eff)" /proc/self/status'], {
        uid: 65534,
        gid: 65534,
        additionalGids: [100, 4],
        cwd: '/tmp',
        env: [...ENV, 'GREETING=héllo wörld'],
      }),
    );
    const result = await outputOf(session);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('to-stderr\n');
    // Non-root gets no permitted or effective capabilities (capabilities(7): setuid from root drops them).
    expect(result.stdout).toBe('65534\n65534\n65534 4 100\n/tmp\nhéllo wörld\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n');
  });

  it('pipes stdin through (1 MiB) and gives the process EOF when stdin ends', async () => {
    const { socket } = await startAgent();
    const input = Buffer.alloc(1024 * 1024, 'x');
    const result = await outputOf(await execViaAgent(socket, request(['sh', '-c', 'wc -c; echo done'])), input);
    expect(result).toEqual({ code: 0, stdout: '1048576\ndone\n', stderr: '' });
  });

  it('passes exit codes and signals through as a shell would (128 + n)', async () => {
    const { socket } = await startAgent();
    expect((await outputOf(await execViaAgent(socket, request(['sh', '-c', 'exit 42'])))).code).toBe(42);
    expect((await outputOf(await execViaAgent(socket, request(['sh', '-c', 'kill -USR1 $$'])))).code).toBe(128 + 10);
  });

  it('reports a command that cannot start with 127/126 and a message on stderr', async () => {
    const { socket } = await startAgent();
    expect(await outputOf(await execViaAgent(socket, request(['no-such-command-here'])))).toEqual({
      code: 127,
      stdout: '',
      stderr: 'warren: exec no-such-command-here: No such file or directory\n',
    });
    await writeFile(join(dir, 'not-executable'), '#!/bin/sh\n', { mode: 0o644 });
    expect(await outputOf(await execViaAgent(socket, request([join(dir, 'not-executable')], { uid: 65534, gid: 65534 })))).toMatchObject({
      code: 126,
      stderr: `warren: exec ${join(dir, 'not-executable')}: Permission denied\n`,
    });
    expect(await outputOf(await execViaAgent(socket, request(['true'], { cwd: '/no/such/dir' })))).toMatchObject({
      code: 126,
      stderr: 'warren: chdir /no/such/dir: No such file or directory\n',
    });
  });

  it('kill() sends SIGTERM to the process group, then SIGKILL after the grace period', async () => {
    const { socket } = await startAgent();
    const polite = await execViaAgent(socket, request(['sleep', '100']));
    const politeResult = outputOf(polite);
    polite.kill();
    expect((await politeResult).code).toBe(128 + 15);
    const stubborn = await execViaAgent(socket, request(['sh', '-c', 'trap "" TERM; echo ready; sleep 100 & wait']), { killGraceMs: 300 });
    const stdout = collect();
    stubborn.stdout.pipe(stdout.stream);
    stubborn.stderr.resume();
    stubborn.stdin.end();
    await waitFor(() => stdout.text() === 'ready\n');
    const started = Date.now();
    stubborn.kill();
    expect(await stubborn.exit).toBe(128 + 9);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('SIGKILLs the process group when the control connection closes first', async () => {
    const { socket } = await startAgent();
    const marker = join(dir, `group-${Date.now()}`);
    const id = Buffer.alloc(16, 7);
    const payload = encodeExecRequest(request(['sh', '-c', `sleep 100 & echo $! > ${marker}; wait`]));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(payload.length);
    const connections = [
      AgentConnectionKind.control,
      AgentConnectionKind.stdin,
      AgentConnectionKind.stdout,
      AgentConnectionKind.stderr,
    ].map((kind) => {
      const connection = createConnection({ path: socket });
      connection.on('error', () => {});
      connection.write(
        kind === AgentConnectionKind.control ? Buffer.concat([connectionHeader(kind, id), length, payload]) : connectionHeader(kind, id),
      );
      return connection;
    });
    await waitFor(async () => (await readFile(marker, 'utf8').catch(() => '')).endsWith('\n'));
    const sleeper = Number((await readFile(marker, 'utf8')).trim());
    expect(existsSync(`/proc/${sleeper}`)).toBe(true);
    connections[0]!.destroy();
    await waitFor(
      async () => !existsSync(`/proc/${sleeper}`) || (await readFile(`/proc/${sleeper}/stat`, 'utf8').catch(() => '')).includes(') Z'),
    );
    for (const connection of connections) connection.destroy();
  });

  it('survives malformed requests and misbehaving clients, and keeps serving', async () => {
    const { socket, agent } = await startAgent();
    const send = (bytes: Buffer) =>
      new Promise<string>((resolve) => {
        const connection = createConnection({ path: socket });
        let reply = '';
        connection.on('data', (chunk: Buffer) => (reply += chunk.toString('latin1')));
        connection.on('error', () => resolve(reply));
        connection.on('close', () => resolve(reply));
        connection.end(bytes);
      });
    const id = Buffer.alloc(16, 1);
    const header = connectionHeader(AgentConnectionKind.control, id);
    expect(await send(Buffer.from('garbage that is not a header at all'))).toBe('');
    expect(await send(Buffer.concat([header, Buffer.from([0xff, 0xff, 0xff, 0xff])]))).toContain('bad length');
    expect(await send(Buffer.concat([header, Buffer.from([0, 0, 0, 8]), Buffer.alloc(3)]))).toBe(''); // truncated, then EOF
    // A complete but invalid request, with its stdio connections: rejected with a message, status 255.
    const bad = Buffer.concat([Buffer.from([0, 0, 0, 12]), Buffer.alloc(12, 0xff)]);
    const others = [AgentConnectionKind.stdin, AgentConnectionKind.stdout, AgentConnectionKind.stderr].map((kind) => {
      const connection = createConnection({ path: socket });
      connection.on('error', () => {});
      connection.write(connectionHeader(kind, id));
      return connection;
    });
    const reply = await send(Buffer.concat([header, bad]));
    expect(reply.charAt(0)).toBe('F');
    expect(reply).toContain('invalid exec request');
    for (const connection of others) connection.destroy();
    // Connections that send nothing hold no one up.
    const idle = Array.from({ length: 20 }, () => createConnection({ path: socket }).on('error', () => {}));
    expect(await outputOf(await execViaAgent(socket, request(['echo', 'still here'])))).toEqual({
      code: 0,
      stdout: 'still here\n',
      stderr: '',
    });
    for (const connection of idle) connection.destroy();
    expect(agent.exitCode).toBeNull();
  });

  it('runs concurrent execs independently', async () => {
    const { socket } = await startAgent();
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, index) =>
        outputOf(await execViaAgent(socket, request(['sh', '-c', `echo ${index}; exit ${index}`]))),
      ),
    );
    results.forEach((result, index) => expect(result).toEqual({ code: index, stdout: `${index}\n`, stderr: '' }));
  });

  it('refuses a symlink or a missing socket, and connects by a path longer than sun_path', async () => {
    const { socket } = await startAgent();
    const planted = join(dir, 'planted.sock');
    await symlink(socket, planted);
    await expect(execViaAgent(planted, request(['true']))).rejects.toMatchObject({ errno: 'ELOOP' });
    await expect(execViaAgent(join(dir, 'missing.sock'), request(['true']))).rejects.toBeInstanceOf(ExecAgentUnavailableError);
    await writeFile(join(dir, 'plain-file'), '');
    await expect(execViaAgent(join(dir, 'plain-file'), request(['true']))).rejects.toMatchObject({ errno: 'ENOTSOCK' });
    // A socket inode hard-linked into a directory whose path exceeds unix(7)'s 108 bytes.
    const deep = join(dir, 'd'.repeat(60), 'e'.repeat(60));
    await mkdir(deep, { recursive: true });
    const long = join(deep, 'exec.sock');
    expect(long.length).toBeGreaterThan(108);
    await link(socket, long);
    expect(await outputOf(await execViaAgent(long, request(['echo', 'long'])))).toMatchObject({ code: 0, stdout: 'long\n' });
  });

  it('refused connections (nobody listening) are ExecAgentUnavailableError with errno ECONNREFUSED', async () => {
    const { socket, agent, exited } = await startAgent();
    const kept = join(dir, 'stale.sock');
    await link(socket, kept);
    agent.kill('SIGTERM');
    expect(await exited).toBe(0);
    await expect(execViaAgent(kept, request(['true']))).rejects.toMatchObject({ errno: 'ECONNREFUSED' });
  });

  it('as init: reaps orphaned zombies', async () => {
    const { socket, agent } = await startAgent();
    // The background sleep outlives its shell and is re-parented to the agent (a child subreaper here, pid 1 in a container).
    expect((await outputOf(await execViaAgent(socket, request(['sh', '-c', 'sleep 0.2 & exit 0'])))).code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await zombieChildren(agent.pid!)).toBe(0);
  });

  it('as init: runs the command, forwards SIGTERM to it and exits with its status', async () => {
    const trapping = await startAgent(['sh', '-c', 'trap "exit 7" TERM; echo started; while :; do sleep 0.05; done']);
    await waitFor(() => trapping.output().includes('started'));
    // Execs work while a command runs.
    expect((await outputOf(await execViaAgent(trapping.socket, request(['true'])))).code).toBe(0);
    trapping.agent.kill('SIGTERM');
    expect(await trapping.exited).toBe(7);

    const plain = await startAgent(['sh', '-c', 'exit 3']);
    expect(await plain.exited).toBe(3);
    const missing = await startAgent(['no-such-init-command']);
    expect(await missing.exited).toBe(127);
    expect(missing.output()).toContain('warren-init: exec no-such-init-command: No such file or directory');
    const killed = await startAgent(['sleep', '100']);
    killed.agent.kill('SIGHUP');
    expect(await killed.exited).toBe(128 + 1);
  });

  it('without a command: ignores SIGHUP, exits 0 on SIGINT', async () => {
    const { agent, socket, exited } = await startAgent();
    agent.kill('SIGHUP');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await outputOf(await execViaAgent(socket, request(['true'])))).code).toBe(0);
    agent.kill('SIGINT');
    expect(await exited).toBe(0);
  });
});
