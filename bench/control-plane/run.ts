// Control-plane benchmark (issue 2): environments created through the HTTP API with a simulated runner reporting
// them Running and 100 concurrent watchers; p50/p99 of create latency, create→Scheduled and watch delivery, on
// PGlite and on PostgreSQL in the same run. Figures are printed, never asserted. Method and definitions: README.md.
//
// The server (startServer) runs alone on this process's main thread; the clients (watchers, the creating client,
// the simulated runner) run in worker threads with their own event loops, as separate client processes would.
// Times are `performance.timeOrigin + performance.now()`, comparable across the threads of one host.
//
// Run (after `npm run build`):
//   npx tsc -p bench/control-plane && node bench/control-plane/run.js
// PostgreSQL is used when WARREN_DATABASE_URL or WARREN_TEST_DATABASE_URL is set (a throwaway database is
// created and dropped); otherwise that half prints why it was skipped.
// Imports go to the built server files (packages/server/dist) because the bench is compiled next to itself.
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { WarrenClient, type Environment, type RunnerStatus } from '@warren/api';
import { silentLogger } from '@warren/base';
import pg from 'pg';
import { ADMIN_USER_NAME } from '../../packages/server/dist/auth/bootstrap.js';
import { issueToken } from '../../packages/server/dist/auth/tokens.js';
import { startServer } from '../../packages/server/dist/server.js';

const ENVIRONMENTS = Number(process.env['BENCH_ENVIRONMENTS'] ?? 1000);
const WATCHERS = Number(process.env['BENCH_WATCHERS'] ?? 100);
/** Worker threads the watchers are spread over (each one event loop, like one client process). */
const WATCHER_THREADS = Number(process.env['BENCH_WATCHER_THREADS'] ?? 2);
/** Creates in flight in throughput mode (latency mode always has one). */
const THROUGHPUT_CONCURRENCY = Number(process.env['BENCH_CREATE_CONCURRENCY'] ?? 10);
/** Environments created (and waited for) before measuring: connects every watcher and warms the JIT. */
const WARMUP = Number(process.env['BENCH_WARMUP'] ?? 20);
/** Samples of each baseline. */
const BASELINE_SAMPLES = Number(process.env['BENCH_BASELINE_SAMPLES'] ?? 300);
/** Engines to run, comma-separated (default both; PostgreSQL needs a URL, see above). */
const ENGINES = (process.env['BENCH_ENGINES'] ?? 'pglite,postgres').split(',');
/** Targets from issue 2 (p99, ms), judged in latency mode. */
const TARGETS = { create: 50, scheduled: 100, delivery: 50 };
const PHASE_TIMEOUT_MS = 180_000;

/** CPU time (user + system) of this process's main thread (the server) in ms, from Linux's /proc (NaN elsewhere). */
function serverThreadCpuMs(): number {
  try {
    // Fields after the command name: state is field 3, utime 14 and stime 15 (proc(5)), in clock ticks (100 Hz).
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** Wall-clock time in ms, comparable across threads of this host. */
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ messages between threads

type WorkerData =
  | { role: 'watchers'; server: string; token: string; count: number; resourceVersion: string }
  | { role: 'runner'; server: string; token: string; runnerId: string; runnerStatus: RunnerStatus }
  | { role: 'creator'; server: string; token: string };

type ToWorker =
  { type: 'create'; prefix: string; count: number; concurrency: number } | { type: 'roundTrips'; count: number } | { type: 'finish' };

type FromWorker =
  | { type: 'running'; min: number }
  | { type: 'created'; records: Array<[id: string, sent: number, answered: number]> }
  | { type: 'roundTrips'; samples: number[] }
  | { type: 'receipts'; resourceVersions: Float64Array; times: Float64Array }
  | { type: 'scheduled'; records: Array<[id: string, at: number]>; errors: number }
  | { type: 'error'; message: string };

// ------------------------------------------------------------------ worker threads (the clients)

async function watchersMain(data: Extract<WorkerData, { role: 'watchers' }>): Promise<void> {
  const stop = new AbortController();
  setMaxListeners(data.count + 10, stop.signal); // one listener per watch request
  const resourceVersions: number[] = [];
  const times: number[] = [];
  const running = Array.from({ length: data.count }, () => 0);
  const watches = running.map(async (_, index) => {
    const client = new WarrenClient({ server: data.server, token: data.token });
    try {
      for await (const event of client.watch('Environment', { resourceVersion: data.resourceVersion, signal: stop.signal })) {
        const at = now();
        if (event.type === 'BOOKMARK') continue;
        resourceVersions.push(Number(event.object.metadata.resourceVersion));
        times.push(at);
        if (event.object.status.phase === 'Running') running[index]!++;
      }
    } catch (error) {
      if (!stop.signal.aborted)
        parentPort!.postMessage({ type: 'error', message: `watcher ${index}: ${String(error)}` } satisfies FromWorker);
    }
  });
  let reported = -1;
  const progress = setInterval(() => {
    const min = Math.min(...running);
    if (min !== reported) parentPort!.postMessage({ type: 'running', min } satisfies FromWorker);
    reported = min;
  }, 20);
  await new Promise<void>((resolve) => parentPort!.once('message', () => resolve())); // 'finish'
  clearInterval(progress);
  stop.abort();
  await Promise.allSettled(watches);
  const message: FromWorker = { type: 'receipts', resourceVersions: Float64Array.from(resourceVersions), times: Float64Array.from(times) };
  parentPort!.postMessage(message);
}

async function runnerMain(data: Extract<WorkerData, { role: 'runner' }>): Promise<void> {
  const stop = new AbortController();
  const client = new WarrenClient({ server: data.server, token: data.token });
  const scheduled = new Map<string, number>();
  let errors = 0;
  const heartbeat = setInterval(() => {
    client.updateRunnerStatus(data.runnerId, { ...data.runnerStatus, lastHeartbeatTime: new Date().toISOString() }).catch(() => errors++);
  }, 5_000);
  const loop = (async () => {
    for await (const event of client.watch('Environment', { runnerId: data.runnerId, signal: stop.signal })) {
      const at = now();
      if (event.type === 'BOOKMARK' || event.type === 'DELETED') continue;
      const environment: Environment = event.object;
      if (environment.status.phase !== 'Pending' || scheduled.has(environment.metadata.id)) continue;
      scheduled.set(environment.metadata.id, at);
      const startedTime = new Date().toISOString();
      client
        .updateEnvironmentStatus(environment.metadata.id, {
          ...environment.status,
          phase: 'Running',
          startedTime,
          lastActivityTime: startedTime,
        })
        .catch((error: unknown) => {
          errors++;
          parentPort!.postMessage({ type: 'error', message: `runner status update: ${String(error)}` } satisfies FromWorker);
        });
    }
  })().catch((error: unknown) => {
    if (!stop.signal.aborted) parentPort!.postMessage({ type: 'error', message: `runner watch: ${String(error)}` } satisfies FromWorker);
  });
  await new Promise<void>((resolve) => parentPort!.once('message', () => resolve())); // 'finish'
  clearInterval(heartbeat);
  stop.abort();
  await loop;
  parentPort!.postMessage({ type: 'scheduled', records: [...scheduled], errors } satisfies FromWorker);
}

function creatorMain(data: Extract<WorkerData, { role: 'creator' }>): void {
  const client = new WarrenClient({ server: data.server, token: data.token });
  parentPort!.on('message', (message: ToWorker) => {
    void (async () => {
      if (message.type === 'finish') {
        parentPort!.close();
        return;
      }
      if (message.type === 'roundTrips') {
        // The floor of any API call: an unauthenticated GET /healthz through the same Fastify, from this thread.
        const samples: number[] = [];
        for (let index = 0; index < message.count; index++) {
          const sent = now();
          const response = await fetch(`${data.server}/healthz`);
          await response.arrayBuffer();
          samples.push(now() - sent);
        }
        parentPort!.postMessage({ type: 'roundTrips', samples } satisfies FromWorker);
        return;
      }
      const records: Array<[string, number, number]> = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: message.concurrency }, async () => {
          while (next < message.count) {
            const index = next++;
            const sent = now();
            const environment = await client.createEnvironment({
              metadata: { name: `${message.prefix}-${index}` },
              spec: { source: { git: { url: 'https://example.com/bench.git' } } },
            });
            records.push([environment.metadata.id, sent, now()]);
          }
        }),
      );
      parentPort!.postMessage({ type: 'created', records } satisfies FromWorker);
    })().catch((error: unknown) => parentPort!.postMessage({ type: 'error', message: `creator: ${String(error)}` } satisfies FromWorker));
  });
}

// ------------------------------------------------------------------ main thread (the server and the bench)

interface PhaseFigures {
  label: string;
  concurrency: number;
  create: number[];
  scheduled: number[];
  delivery: number[];
  environmentsPerSecond: number;
  /** Busy time of the server's event loop (main thread) per environment, ms (includes time the OS ran others). */
  serverBusyMsPerEnvironment: number;
  /** CPU time of the server's thread per environment, ms. */
  serverCpuMsPerEnvironment: number;
}

interface EngineFigures {
  engine: string;
  rawInsert: number[];
  roundTrip: number[];
  phases: PhaseFigures[];
  errors: string[];
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A worker thread running one client role; messages are queued until awaited. */
class ClientThread {
  private readonly worker: Worker;
  private readonly inbox: FromWorker[] = [];
  private waiter: (() => void) | undefined;
  latestRunning = 0;

  constructor(data: WorkerData, errors: string[]) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: data });
    this.worker.on('message', (message: FromWorker) => {
      if (message.type === 'running') this.latestRunning = message.min;
      else if (message.type === 'error') errors.push(message.message);
      else this.inbox.push(message);
      this.waiter?.();
    });
    this.worker.on('error', (error) => errors.push(`${data.role} thread: ${String(error)}`));
  }

  send(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  async receive<T extends FromWorker['type']>(type: T): Promise<Extract<FromWorker, { type: T }>> {
    for (;;) {
      const index = this.inbox.findIndex((message) => message.type === type);
      if (index >= 0) return this.inbox.splice(index, 1)[0] as Extract<FromWorker, { type: T }>;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }

  /** Stops a thread that did not finish (after an error). */
  async terminate(): Promise<void> {
    await this.worker.terminate();
  }

  async exit(): Promise<void> {
    await new Promise((resolve) => {
      this.worker.once('exit', resolve);
      this.send({ type: 'finish' });
    });
  }
}

/** Sequential raw INSERTs of `row` (an environment as stored: jsonb) through the engine, outside Warren: a durable write's floor. */
async function rawInserts(engine: 'pglite' | 'postgres', databaseUrl: string | undefined, row: unknown): Promise<number[]> {
  const samples: number[] = [];
  const body = JSON.stringify(row);
  const ddl = 'create table raw_objects (id text primary key, kind text not null, body jsonb not null)';
  const insert = 'insert into raw_objects (id, kind, body) values ($1, $2, $3)';
  if (engine === 'pglite') {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-bench-raw-'));
    const database = await PGlite.create(join(dataDir, 'db'));
    try {
      await database.query(ddl);
      for (let index = 0; index < BASELINE_SAMPLES; index++) {
        const started = now();
        await database.query(insert, [`raw-${index}`, 'Environment', body]);
        samples.push(now() - started);
      }
    } finally {
      await database.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  } else {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query(ddl);
      for (let index = 0; index < BASELINE_SAMPLES; index++) {
        const started = now();
        await client.query(insert, [`raw-${index}`, 'Environment', body]);
        samples.push(now() - started);
      }
      await client.query('drop table raw_objects');
    } finally {
      await client.end();
    }
  }
  return samples;
}

async function runEngine(engine: 'pglite' | 'postgres', baseUrl?: string): Promise<EngineFigures> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const errors: string[] = [];
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-bench-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  let databaseUrl: string | undefined;
  if (engine === 'postgres') {
    // A throwaway database, so startServer runs exactly as `warren server` does (schema public).
    const database = `warren_bench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: baseUrl });
    await admin.connect();
    await admin.query(`create database ${database}`);
    await admin.end();
    const url = new URL(baseUrl!);
    url.pathname = `/${database}`;
    databaseUrl = url.toString();
    cleanups.push(async () => {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      await client.query(`drop database if exists ${database} with (force)`);
      await client.end();
    });
  }
  const threads: ClientThread[] = [];
  try {
    const server = await startServer({ dataDir, ...(databaseUrl ? { databaseUrl } : {}), port: 0, logger: silentLogger });
    cleanups.unshift(() => server.close());
    const { store } = server;
    const adminToken = server.adminToken!;
    const [admin] = await store.getByName('User', ADMIN_USER_NAME);
    if (!admin) throw new Error('bootstrap made no admin user');

    // The simulated runner: registered with ample capacity; it heartbeats and reports each environment Running.
    const runnerStatus: RunnerStatus = {
      phase: 'Active',
      lastHeartbeatTime: new Date().toISOString(),
      capacity: { cpuMillicores: 10_000_000, memoryBytes: 2 ** 50, environments: 100_000 },
      endpoints: {},
      conditions: [],
    };
    const runner = await store.create('Runner', {
      name: 'bench-runner',
      ownerId: admin.metadata.id,
      spec: { unschedulable: false },
      status: runnerStatus,
    });
    const { secret: runnerToken } = await issueToken(store, {
      name: 'bench-runner-token',
      ownerId: admin.metadata.id,
      type: 'Runner',
      runnerName: 'bench-runner',
    });

    // Commit times: an in-process subscriber of the store, the first one, so it hears each event as soon as the
    // hub hands it out right after the commit (before any watch stream writes it).
    const stopRecorder = new AbortController();
    cleanups.unshift(() => Promise.resolve(stopRecorder.abort()));
    const { resourceVersion: startVersion } = await store.list('Environment');
    const committed = new Map<number, { at: number; phase: number }>();
    let phaseIndex = -1; // -1: warm-up, not reported
    const recorder = (async () => {
      for await (const event of store.watch('Environment', { fromResourceVersion: startVersion, signal: stopRecorder.signal })) {
        committed.set(Number(event.object.metadata.resourceVersion), { at: now(), phase: phaseIndex });
      }
    })().catch((error: unknown) => {
      if (!stopRecorder.signal.aborted) errors.push(`recorder: ${String(error)}`);
    });

    const perThread = Math.ceil(WATCHERS / WATCHER_THREADS);
    const watcherThreads: ClientThread[] = [];
    for (let left = WATCHERS; left > 0; left -= perThread) {
      watcherThreads.push(
        new ClientThread(
          { role: 'watchers', server: server.url, token: adminToken, count: Math.min(perThread, left), resourceVersion: startVersion },
          errors,
        ),
      );
    }
    const runnerThread = new ClientThread(
      { role: 'runner', server: server.url, token: runnerToken, runnerId: runner.metadata.id, runnerStatus },
      errors,
    );
    const creator = new ClientThread({ role: 'creator', server: server.url, token: adminToken }, errors);
    threads.push(...watcherThreads, runnerThread, creator);

    let expectedRunning = 0;
    const createAndWait = async (prefix: string, count: number, concurrency: number) => {
      creator.send({ type: 'create', prefix, count, concurrency });
      const { records } = await creator.receive('created');
      expectedRunning += count;
      const deadline = now() + PHASE_TIMEOUT_MS;
      while (watcherThreads.some((thread) => thread.latestRunning < expectedRunning) && now() < deadline) await sleep(5);
      if (watcherThreads.some((thread) => thread.latestRunning < expectedRunning)) {
        errors.push(`${prefix}: not every watcher saw every environment Running within ${PHASE_TIMEOUT_MS / 1000} s`);
      }
      return records;
    };

    // Warm-up: every watcher is connected once it has seen these Running (the API holds a watch's headers until its
    // first event or a grace period, so a fixed sleep would be a guess).
    await createAndWait('warmup', WARMUP, 1);

    const modes = [
      { label: 'latency mode: one client, creates one after another (1 in flight)', concurrency: 1 },
      { label: `throughput mode: ${THROUGHPUT_CONCURRENCY} creates in flight`, concurrency: THROUGHPUT_CONCURRENCY },
    ];
    const created: Array<Array<[string, number, number]>> = [];
    const phaseStats: Array<{ seconds: number; busyMs: number; cpuMs: number }> = [];
    for (const [index, mode] of modes.entries()) {
      phaseIndex = index;
      const started = now();
      const utilization = performance.eventLoopUtilization();
      const cpuStarted = serverThreadCpuMs();
      created.push(await createAndWait(`bench${index}`, ENVIRONMENTS, mode.concurrency));
      phaseStats.push({
        seconds: (now() - started) / 1000,
        busyMs: performance.eventLoopUtilization(utilization).active,
        cpuMs: serverThreadCpuMs() - cpuStarted,
      });
    }
    phaseIndex = -2;

    // Baselines, with the watchers still connected (idle).
    const [sample] = await store.getByName('Environment', 'bench0-0');
    const rawInsert = await rawInserts(engine, databaseUrl, sample);
    creator.send({ type: 'roundTrips', count: BASELINE_SAMPLES });
    const roundTrip = (await creator.receive('roundTrips')).samples;

    // Collect what the clients saw.
    const scheduledAt = new Map<string, number>();
    const receipts: Array<{ resourceVersions: Float64Array; times: Float64Array }> = [];
    for (const thread of watcherThreads) {
      const done = thread.receive('receipts');
      await thread.exit();
      receipts.push(await done);
    }
    {
      const done = runnerThread.receive('scheduled');
      await runnerThread.exit();
      const { records, errors: count } = await done;
      for (const [id, at] of records) scheduledAt.set(id, at);
      if (count > 0) errors.push(`runner: ${count} failed calls`);
    }
    await creator.exit();
    threads.length = 0;
    stopRecorder.abort();
    await recorder;

    const phases = modes.map((mode, index): PhaseFigures => {
      const records = created[index]!;
      const delivery: number[] = [];
      for (const { resourceVersions, times } of receipts) {
        for (let at = 0; at < resourceVersions.length; at++) {
          const commit = committed.get(resourceVersions[at]!);
          if (commit?.phase === index) delivery.push(times[at]! - commit.at);
        }
      }
      return {
        label: mode.label,
        concurrency: mode.concurrency,
        create: records.map(([, sent, answered]) => answered - sent),
        scheduled: records.flatMap(([id, sent]) => {
          const at = scheduledAt.get(id);
          return at === undefined ? [] : [at - sent];
        }),
        delivery,
        environmentsPerSecond: ENVIRONMENTS / phaseStats[index]!.seconds,
        serverBusyMsPerEnvironment: phaseStats[index]!.busyMs / ENVIRONMENTS,
        serverCpuMsPerEnvironment: phaseStats[index]!.cpuMs / ENVIRONMENTS,
      };
    });
    return { engine, rawInsert, roundTrip, phases, errors };
  } finally {
    await Promise.allSettled(threads.map((thread) => thread.terminate()));
    for (const cleanup of cleanups) await cleanup().catch((error: unknown) => console.error('cleanup failed:', error));
  }
}

function report(results: EngineFigures[]): void {
  const ms = (value: number) => (Number.isNaN(value) ? '-' : `${value.toFixed(1)} ms`);
  const row = (cells: string[]) => console.log(cells.map((cell, index) => (index === 0 ? cell.padEnd(34) : cell.padStart(12))).join(''));
  console.log(
    `\ncontrol plane: ${ENVIRONMENTS} environments per mode, ${WATCHERS} watchers in ${WATCHER_THREADS} client threads, server alone on the main thread`,
  );
  for (const result of results) {
    console.log(`\n== ${result.engine}`);
    row(['baseline', 'p50', 'p99']);
    row(['raw INSERT of the row (engine)', ms(percentile(result.rawInsert, 50)), ms(percentile(result.rawInsert, 99))]);
    row(['GET /healthz round trip', ms(percentile(result.roundTrip, 50)), ms(percentile(result.roundTrip, 99))]);
    for (const [index, phase] of result.phases.entries()) {
      const judged = index === 0;
      console.log(`-- ${phase.label}${judged ? ' [targets judged here]' : ' [not judged]'}`);
      row(['metric', 'p50', 'p99', ...(judged ? ['target p99', ''] : [])]);
      const metrics: Array<[string, number[], number]> = [
        ['create latency', phase.create, TARGETS.create],
        ['create → Scheduled (runner sees it)', phase.scheduled, TARGETS.scheduled],
        [`watch delivery (${phase.delivery.length} events)`, phase.delivery, TARGETS.delivery],
      ];
      for (const [label, values, target] of metrics) {
        const p99 = percentile(values, 99);
        row([label, ms(percentile(values, 50)), ms(p99), ...(judged ? [`< ${target} ms`, p99 < target ? 'PASS' : 'MISS'] : [])]);
      }
      row(['throughput', `${phase.environmentsPerSecond.toFixed(1)} env/s`]);
      row(['server loop busy per environment', ms(phase.serverBusyMsPerEnvironment)]);
      row(['server thread CPU per environment', ms(phase.serverCpuMsPerEnvironment)]);
    }
    for (const error of result.errors.slice(0, 10)) console.log(`error: ${error}`);
    if (result.errors.length > 10) console.log(`... ${result.errors.length - 10} more errors`);
  }
}

if (isMainThread) {
  const results: EngineFigures[] = [];
  if (ENGINES.includes('pglite')) results.push(await runEngine('pglite'));
  const databaseUrl = process.env['WARREN_DATABASE_URL'] || process.env['WARREN_TEST_DATABASE_URL'];
  if (!ENGINES.includes('postgres')) console.log('postgres: skipped (not in BENCH_ENGINES)');
  else if (databaseUrl) results.push(await runEngine('postgres', databaseUrl));
  else console.log('postgres: skipped (set WARREN_DATABASE_URL or WARREN_TEST_DATABASE_URL)');
  report(results);
} else {
  const data = workerData as WorkerData;
  if (data.role === 'watchers') await watchersMain(data);
  else if (data.role === 'runner') await runnerMain(data);
  else creatorMain(data);
}
