// The bench's control plane in its own process, as `warren up` runs it (the runner is a child process of
// `warren up`): startServer with the embedded database (PGlite) in a temp dir, plus a runner token. It reports
// `{ url, adminToken, runnerToken }` over the IPC channel and closes on a `stop` message or when the channel closes.
// Keeping PGlite's few hundred MiB out of the runner's process matters: every tool the runner spawns is a fork(2),
// whose cost grows with the parent's resident memory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@warren/base';
import { ensureRunnerToken, startServer } from '@warren/server';

/** What the server process reports once it listens. */
export interface ServerProcessReady {
  url: string;
  adminToken: string;
  runnerToken: string;
}

if (process.send) {
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
