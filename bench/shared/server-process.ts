// The benches' control plane in its own process, as `warren up` runs it (its runner is a child process,
// docs/design/0007): startServer with the embedded database (PGlite) in a temp dir, plus a runner token.
// Keeping PGlite's few hundred MiB out of the runner's process matters: every tool the runner spawns is a fork(2),
// whose cost grows with the parent's resident memory.
//
// This module is both sides: a bench imports `startServerProcess`, which forks this same file with
// WARREN_BENCH_SERVER_PROCESS=1; the child reports `{ url, adminToken, runnerToken }` over the IPC channel and closes
// on a `stop` message or when the channel closes.
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '@warren/base';
import { ensureRunnerToken, startServer } from '@warren/server';

/** What the server process reports once it listens. */
export interface ServerProcessReady {
  url: string;
  adminToken: string;
  runnerToken: string;
}

/**
 * Starts the control plane in a child process (this file, forked).
 * @param runnerName the name the runner token is made for.
 * @returns its URL, an admin token, a runner token and a stop function (closes the server, removes its data).
 * @throws {Error} when the process exits before it reports ready.
 */
export async function startServerProcess(runnerName: string): Promise<ServerProcessReady & { stop(): Promise<void> }> {
  const child = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, WARREN_BENCH_SERVER_PROCESS: '1', BENCH_RUNNER_NAME: runnerName },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<ServerProcessReady>((resolve, reject) => {
    child.once('message', (message: ServerProcessReady) => resolve(message));
    child.once('exit', (code) => reject(new Error(`the server process exited (code ${code}) before it was ready`)));
  });
  return {
    ...ready,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.send('stop');
      await exited;
    },
  };
}

if (process.env['WARREN_BENCH_SERVER_PROCESS'] === '1' && process.send) {
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-server-'));
  const server = await startServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: silentLogger });
  const runnerToken = await ensureRunnerToken(server.store, process.env['BENCH_RUNNER_NAME'] ?? 'bench');
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    await rm(dir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on('message', (message: unknown) => {
    if (message === 'stop') void stop();
  });
  process.on('disconnect', () => void stop());
  process.send({ url: server.url, adminToken: server.adminToken!, runnerToken } satisfies ServerProcessReady);
}
