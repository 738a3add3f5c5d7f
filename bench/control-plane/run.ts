// Control-plane benchmark (issue 2): 1,000 environments created through the HTTP API with a simulated
// runner reporting them Running, 100 concurrent watchers; p50/p99 of create latency, create→Scheduled and
// watch delivery, on PGlite and on PostgreSQL in the same run. Figures are printed, never asserted.
//
// Run (after `npm run build`):
//   npx tsc -p bench/control-plane && node bench/control-plane/run.js
// PostgreSQL is used when WARREN_DATABASE_URL or WARREN_TEST_DATABASE_URL is set (a throwaway schema is
// created and dropped); otherwise that half prints why it was skipped.
// Imports go to the built server files (packages/server/dist) because the bench is compiled next to itself.
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WarrenClient, type Environment } from '@warren/api';
import { silentLogger } from '@warren/base';
import pg from 'pg';
import { bootstrap } from '../../packages/server/dist/auth/bootstrap.js';
import { loadSigningKeys } from '../../packages/server/dist/auth/signing.js';
import { issueToken } from '../../packages/server/dist/auth/tokens.js';
import { ControllerManager } from '../../packages/server/dist/controllers/index.js';
import { buildApp } from '../../packages/server/dist/http/app.js';
import { openStore, type OpenStoreOptions } from '../../packages/server/dist/storage/index.js';

const ENVIRONMENTS = Number(process.env['BENCH_ENVIRONMENTS'] ?? 1000);
const WATCHERS = Number(process.env['BENCH_WATCHERS'] ?? 100);
/** Creates in flight at once (a busy API, not one client in a loop). */
const CREATE_CONCURRENCY = Number(process.env['BENCH_CREATE_CONCURRENCY'] ?? 10);
/** Engines to run, comma-separated (default both; PostgreSQL needs a URL, see above). */
const ENGINES = (process.env['BENCH_ENGINES'] ?? 'pglite,postgres').split(',');
/** Targets from issue 2, printed beside the figures. */
const TARGETS = { createP99: 50, scheduledP99: 100, deliveryP99: 50 };
/**
 * p99 figures (ms) of the last run before group commit (commit 59cd781, default settings, both engines, on a
 * host shared with other test runs), printed beside the new ones.
 */
const BASELINE = {
  pglite: { create: 2652.8, scheduled: 2424.0, delivery: 0.0, cpuMsPerEnvironment: Number.NaN },
  postgres: { create: 1136.4, scheduled: 44076.6, delivery: 35.4, cpuMsPerEnvironment: Number.NaN },
} as const;

interface Figures {
  engine: string;
  create: number[];
  scheduled: number[];
  delivery: number[];
  totalSeconds: number;
  /** CPU time (user + system) of this process during the creates and until every watcher saw every Running, per environment. */
  cpuMsPerEnvironment: number;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function runEngine(engine: 'pglite' | 'postgres', databaseUrl?: string): Promise<Figures> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  let storeOptions: OpenStoreOptions;
  if (engine === 'postgres') {
    storeOptions = { databaseUrl: databaseUrl!, schema, logger: silentLogger, poolSize: 20 };
    cleanups.push(async () => {
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      await client.query(`drop schema if exists ${client.escapeIdentifier(schema)} cascade`);
      await client.end();
    });
  } else {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-bench-'));
    storeOptions = { dataDir, logger: silentLogger };
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  }
  const store = await openStore(storeOptions);
  cleanups.unshift(() => store.close());
  const stop = new AbortController();
  setMaxListeners(WATCHERS + 10, stop.signal); // one listener per watcher client
  try {
    const boot = await bootstrap(store);
    const signingKeys = await loadSigningKeys(store);
    const app = buildApp({ store, logger: silentLogger, signingKeys });
    await app.listen({ host: '127.0.0.1', port: 0 });
    cleanups.unshift(() => app.close());
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('server has no TCP address');
    const server = `http://127.0.0.1:${address.port}`;
    const manager = new ControllerManager({ store, logger: silentLogger });
    manager.start();
    cleanups.unshift(() => manager.stop());

    const admin = new WarrenClient({ server, token: boot.adminToken! });
    // The simulated runner: registered with ample capacity, heartbeating, reporting each environment Running.
    const runner = await store.create('Runner', {
      name: 'bench-runner',
      ownerId: boot.admin.metadata.id,
      spec: { unschedulable: false },
      status: {
        phase: 'Active',
        lastHeartbeatTime: new Date().toISOString(),
        capacity: { cpuMillicores: 10_000_000, memoryBytes: 2 ** 50, environments: 100_000 },
        endpoints: {},
        conditions: [],
      },
    });
    const { secret: runnerToken } = await issueToken(store, { name: 'bench-runner-token', ownerId: boot.admin.metadata.id, type: 'Runner', runnerName: 'bench-runner' });
    const runnerClient = new WarrenClient({ server, token: runnerToken });
    const heartbeat = setInterval(() => {
      void store.update('Runner', runner.metadata.id, (current) => ({ ...current, status: { ...current.status, lastHeartbeatTime: new Date().toISOString() } }));
    }, 5_000);
    cleanups.unshift(() => Promise.resolve(clearInterval(heartbeat)));
    const acknowledged = new Map<string, number>(); // `${id}@${rv}` → when the writer got its answer
    const reported = new Set<string>();
    const runnerLoop = (async () => {
      for await (const event of runnerClient.watch('Environment', { runnerId: runner.metadata.id, signal: stop.signal })) {
        const environment = event.object;
        if (event.type === 'DELETED' || environment.status.phase !== 'Pending' || reported.has(environment.metadata.id)) continue;
        reported.add(environment.metadata.id);
        const now = new Date().toISOString();
        void runnerClient
          .updateEnvironmentStatus(environment.metadata.id, { ...environment.status, phase: 'Running', startedTime: now, lastActivityTime: now })
          .then((updated) => acknowledged.set(`${updated.metadata.id}@${updated.metadata.resourceVersion}`, performance.now()));
      }
    })().catch((error: unknown) => {
      if (!stop.signal.aborted) throw error;
    });

    // 100 watchers of every environment.
    const createdAt = new Map<string, number>();
    const scheduledSeen = new Map<string, number>();
    const receipts: Array<{ key: string; at: number }> = [];
    const runningSeen = Array.from({ length: WATCHERS }, () => 0);
    const watchers = Array.from({ length: WATCHERS }, async (_, index) => {
      const client = new WarrenClient({ server, token: boot.adminToken! });
      try {
        for await (const event of client.watch('Environment', { signal: stop.signal })) {
          const at = performance.now();
          const environment: Environment = event.object;
          receipts.push({ key: `${environment.metadata.id}@${environment.metadata.resourceVersion}`, at });
          if (index === 0 && environment.status.runnerId && !scheduledSeen.has(environment.metadata.id)) scheduledSeen.set(environment.metadata.id, at);
          if (environment.status.phase === 'Running') runningSeen[index]!++;
        }
      } catch (error) {
        if (!stop.signal.aborted) throw error;
      }
    });
    // Let every watch subscribe (the API holds headers until the first event or a short grace period).
    await new Promise((resolve) => setTimeout(resolve, 1_500));

    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    const create: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: CREATE_CONCURRENCY }, async () => {
        while (next < ENVIRONMENTS) {
          const index = next++;
          const t0 = performance.now();
          const environment = await admin.createEnvironment({
            metadata: { name: `bench-${index}` },
            spec: { source: { git: { url: 'https://example.com/bench.git' } } },
          });
          const t1 = performance.now();
          create.push(t1 - t0);
          createdAt.set(environment.metadata.id, t0);
          acknowledged.set(`${environment.metadata.id}@${environment.metadata.resourceVersion}`, t1);
        }
      }),
    );
    const deadline = performance.now() + 180_000;
    while (runningSeen.some((count) => count < ENVIRONMENTS) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const totalSeconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuStarted);
    const cpuMsPerEnvironment = (cpu.user + cpu.system) / 1000 / ENVIRONMENTS;
    if (runningSeen.some((count) => count < ENVIRONMENTS)) {
      console.error(`${engine}: not every watcher saw every environment Running within 180 s (min ${Math.min(...runningSeen)})`);
    }
    stop.abort();
    await Promise.allSettled([...watchers, runnerLoop]);
    const scheduled = [...scheduledSeen].flatMap(([id, at]) => {
      const t0 = createdAt.get(id);
      return t0 === undefined ? [] : [at - t0];
    });
    // Delivery: from the writer's acknowledgement to receipt by a watcher (an event may beat the answer: 0).
    const delivery = receipts.flatMap(({ key, at }) => {
      const ack = acknowledged.get(key);
      return ack === undefined ? [] : [Math.max(0, at - ack)];
    });
    return { engine, create, scheduled, delivery, totalSeconds, cpuMsPerEnvironment };
  } finally {
    stop.abort();
    for (const cleanup of cleanups) await cleanup().catch((error: unknown) => console.error('cleanup failed:', error));
  }
}

function report(figures: Figures[]): void {
  const row = (cells: string[]) => console.log(cells.map((cell, index) => (index === 0 ? cell.padEnd(28) : cell.padStart(14))).join(''));
  const ms = (value: number) => (Number.isNaN(value) ? '-' : `${value.toFixed(1)} ms`);
  console.log(`\ncontrol plane: ${ENVIRONMENTS} environments, ${WATCHERS} watchers, ${CREATE_CONCURRENCY} creates in flight\n`);
  row(['metric', ...figures.flatMap((each) => [`${each.engine} p50`, `${each.engine} p99`, 'baseline p99']), 'target p99']);
  const metrics: Array<[string, 'create' | 'scheduled' | 'delivery', number]> = [
    ['create latency', 'create', TARGETS.createP99],
    ['create → Scheduled', 'scheduled', TARGETS.scheduledP99],
    ['watch delivery', 'delivery', TARGETS.deliveryP99],
  ];
  for (const [label, key, target] of metrics) {
    row([
      label,
      ...figures.flatMap((each) => [ms(percentile(each[key], 50)), ms(percentile(each[key], 99)), ms(BASELINE[each.engine as keyof typeof BASELINE][key])]),
      `< ${target} ms`,
    ]);
  }
  row(['CPU per environment', ...figures.flatMap((each) => [ms(each.cpuMsPerEnvironment), '', ''])]);
  row(['samples (delivery)', ...figures.flatMap((each) => [String(each.delivery.length), '', ''])]);
  row(['wall time', ...figures.flatMap((each) => [`${each.totalSeconds.toFixed(1)} s`, '', ''])]);
}

const results: Figures[] = [];
if (ENGINES.includes('pglite')) results.push(await runEngine('pglite'));
const databaseUrl = process.env['WARREN_DATABASE_URL'] || process.env['WARREN_TEST_DATABASE_URL'];
if (!ENGINES.includes('postgres')) console.log('postgres: skipped (not in BENCH_ENGINES)');
else if (databaseUrl) results.push(await runEngine('postgres', databaseUrl));
else console.log('postgres: skipped (set WARREN_DATABASE_URL or WARREN_TEST_DATABASE_URL)');
report(results);
