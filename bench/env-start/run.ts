// Environment start benchmark (issue 3 "Benchmark (bench/env-start)"): create→first exec and
// start-from-stopped→first exec of a small repository with a cached image, p50/p95 over 20 runs each, and the
// reference `devcontainer up` + `devcontainer exec true` on the runner-managed Docker engine side by side.
// Figures are printed, never asserted. See README.md for what is measured and how to run it.
//
// Compiled with rootDir ../.. into bench/env-start/dist/ so the e2e fixtures (TypeScript) compile along; the
// runner internals the public index does not export (builder, runtime, cgroups) are imported from their built
// files by absolute URL at run time, typed through their declaration files.
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type Environment, WarrenClient } from '@warren/api';
import { type Logger, sleep } from '@warren/base';
import { type RunningRunner, exec, execInEnvironment, startRunner } from '@warren/runner';
import type * as Builder from '../../packages/runner/dist/builder/index.js';
import type * as Cgroups from '../../packages/runner/dist/linux/cgroups.js';
import type * as RuntimeSelection from '../../packages/runner/dist/linux/runtime-selection.js';
import { ensureTestImages } from '../../e2e/fixtures/images.js';
import type { GitHostInput } from './git-host.js';
import { startServerProcess } from '../shared/server-process.js';
import { startRegistry } from '../../e2e/fixtures/registry.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 20);
const REFERENCE_RUNS = Number(process.env['BENCH_REFERENCE_RUNS'] ?? 5);
/** Slot range of this bench's runner, apart from `warren up` (0...), the test suites (1000...) and network tests (15000...). */
const SLOT_OFFSET = Number(process.env['BENCH_SLOT_OFFSET'] ?? 9000);
/** Issue 3 targets (p50, ms). */
const TARGETS = { createP50: 300, startP50: 150 };
const IMAGE = 'mcr.microsoft.com/devcontainers/base:bookworm';

/** `bench/env-start/dist/bench/env-start/run.js` → the repository root. */
const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));
const distRoot = fileURLToPath(new URL('../../', import.meta.url));
const load = <T>(path: string) => import(pathToFileURL(join(repoRoot, path)).href) as Promise<T>;

function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * A logger that keeps every record carrying `durationMs`, grouped by phase of the bench, for the per-step
 * breakdown; with BENCH_LOG=debug|info it also prints records to stderr as JSON lines.
 */
class TimingLogger implements Logger {
  static phase = 'setup';
  static readonly records = new Map<string, Map<string, number[]>>();
  static readonly level = process.env['BENCH_LOG'];
  constructor(private readonly bindings: Record<string, unknown> = {}) {}
  private record(level: string, fields: Record<string, unknown>, message: string): void {
    if (TimingLogger.level === 'debug' || (TimingLogger.level === 'info' && level !== 'debug') || level === 'warn' || level === 'error') {
      if (TimingLogger.level || level === 'error')
        console.error(JSON.stringify({ t: Math.round(performance.now() * 10) / 10, level, message, ...this.bindings, ...fields }));
    }
    const duration = fields['durationMs'];
    if (typeof duration !== 'number') return;
    const argv = fields['argv'] as string[] | undefined;
    const tool = argv
      ? ` ${argv
          .slice(0, 4)
          .filter((part) => !part.startsWith('/') && !part.startsWith('--root'))
          .slice(0, 3)
          .join(' ')}`
      : '';
    const component = typeof this.bindings['component'] === 'string' ? this.bindings['component'] : '';
    const step = typeof fields['step'] === 'string' ? ` ${fields['step']}` : '';
    const key = `${component}: ${message}${tool}${step}`;
    let phase = TimingLogger.records.get(TimingLogger.phase);
    if (!phase) TimingLogger.records.set(TimingLogger.phase, (phase = new Map<string, number[]>()));
    const list = phase.get(key) ?? [];
    list.push(duration);
    phase.set(key, list);
  }
  debug(fields: Record<string, unknown>, message: string): void {
    this.record('debug', fields, message);
  }
  info(fields: Record<string, unknown>, message: string): void {
    this.record('info', fields, message);
  }
  warn(fields: Record<string, unknown>, message: string): void {
    this.record('warn', fields, message);
  }
  error(fields: Record<string, unknown>, message: string): void {
    this.record('error', fields, message);
  }
  child(bindings: Record<string, unknown>): Logger {
    return new TimingLogger({ ...this.bindings, ...bindings });
  }
}

/**
 * Starts the git host (git-host.ts) in a worker thread with the repository `input` describes.
 * @returns its clone URL and a stop function.
 */
async function startGitHost(input: GitHostInput): Promise<{ url: string; stop(): Promise<void> }> {
  const worker = new Worker(new URL('./git-host.js', import.meta.url), { workerData: input });
  const url = await new Promise<string>((resolve, reject) => {
    worker.once('message', (message: { url: string }) => resolve(message.url));
    worker.once('error', reject);
  });
  return {
    url,
    stop: async () => {
      worker.postMessage('stop');
      await new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    },
  };
}

/** With BENCH_LOG set, prints a timestamped marker on the same clock as the log records (for timelines). */
function mark(name: string, fields: Record<string, unknown> = {}): void {
  if (TimingLogger.level)
    console.error(JSON.stringify({ t: Math.round(performance.now() * 10) / 10, level: 'mark', message: name, ...fields }));
}

const nullSink = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });

/** Follows every Environment through one watch and resolves waiters on the status they wait for. */
class EnvironmentWatcher {
  private readonly latest = new Map<string, Environment>();
  private readonly waiters = new Set<{
    id: string;
    test: (environment: Environment) => boolean;
    resolve: (environment: Environment) => void;
  }>();
  private readonly stop = new AbortController();
  private readonly loop: Promise<void>;

  constructor(client: WarrenClient) {
    this.loop = (async () => {
      for await (const event of client.watch('Environment', { signal: this.stop.signal })) {
        const environment = event.object;
        this.latest.set(environment.metadata.id, environment);
        for (const waiter of [...this.waiters]) {
          if (
            waiter.id === environment.metadata.id &&
            (event.type !== 'DELETED'
              ? waiter.test(environment)
              : waiter.test({ ...environment, status: { ...environment.status, phase: 'Deleted' } }))
          ) {
            this.waiters.delete(waiter);
            waiter.resolve(environment);
          }
        }
      }
    })().catch((error: unknown) => {
      if (!this.stop.signal.aborted) throw error;
    });
  }

  /** Resolves with the first state of `id` (already seen or coming) that passes `test`; rejects on Failed or after `timeoutMs`. */
  waitFor(id: string, what: string, test: (environment: Environment) => boolean, timeoutMs = 120_000): Promise<Environment> {
    const seen = this.latest.get(id);
    if (seen && test(seen)) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        id,
        test: (environment: Environment) => {
          if (environment.status.phase === 'Failed' && environment.status.observedGeneration === environment.metadata.generation) {
            clearTimeout(timer);
            reject(new Error(`environment ${id} failed while waiting for ${what}: ${environment.status.message ?? ''}`));
            return true;
          }
          return test(environment);
        },
        resolve: (environment: Environment) => {
          clearTimeout(timer);
          resolve(environment);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`environment ${id} did not reach ${what} in ${timeoutMs} ms: ${JSON.stringify(this.latest.get(id)?.status)}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.loop;
  }
}

const isRunning = (generation: number) => (environment: Environment) =>
  environment.status.phase === 'Running' && (environment.status.observedGeneration ?? 0) >= generation;
const isStopped = (generation: number) => (environment: Environment) =>
  environment.status.phase === 'Stopped' && (environment.status.observedGeneration ?? 0) >= generation;

/** Creates an access grant and runs `true` through the access API; @returns both durations (ms); @throws when it exits non-zero. */
async function execTrue(admin: WarrenClient, id: string): Promise<{ grantMs: number; execMs: number }> {
  const t0 = performance.now();
  const grant = await admin.createAccessGrant(id);
  const t1 = performance.now();
  const code = await execInEnvironment(grant, ['true'], { stdout: nullSink(), stderr: nullSink() });
  if (code !== 0) throw new Error(`exec true in ${id} exited with ${code}`);
  return { grantMs: t1 - t0, execMs: performance.now() - t1 };
}

/** Where one measured run's time went, as the client sees it. */
interface Split {
  runningMs: number[];
  grantMs: number[];
  execMs: number[];
}
const newSplit = (): Split => ({ runningMs: [], grantMs: [], execMs: [] });

interface Figures {
  create: number[];
  start: number[];
  createSplit: Split;
  startSplit: Split;
  reference: number[];
  referenceUp: number[];
  referenceExec: number[];
  referenceSkipped?: string;
}

async function main(): Promise<Figures> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const step of cleanups.splice(0).reverse()) await step().catch((error: unknown) => console.error('cleanup failed:', error));
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  const logger = new TimingLogger();
  const figures: Figures = {
    create: [],
    start: [],
    createSplit: newSplit(),
    startSplit: newSplit(),
    reference: [],
    referenceUp: [],
    referenceExec: [],
  };
  try {
    // ---------------------------------------------------------------- fixtures
    // images.ts finds scripts/test-images.sh relative to itself; give the compiled copy the same neighbour.
    await lstat(join(distRoot, 'scripts')).catch(() => symlink(join(repoRoot, 'scripts'), join(distRoot, 'scripts')));
    const registry = await startRegistry();
    cleanups.push(() => registry.stop());
    const images = await ensureTestImages(registry);
    const repo = await startGitHost({
      name: `bench/app${randomBytes(3).toString('hex')}`,
      files: {
        '.devcontainer/devcontainer.json': `{\n  // the smallest real-world shape: an image from the devcontainers catalogue\n  "name": "bench",\n  "image": "${IMAGE}"\n}\n`,
        'README.md': '# bench\n',
      },
    });
    cleanups.push(() => repo.stop());

    // ---------------------------------------------------------------- control plane + runner
    // The server runs in its own process, as with `warren up` (whose runner is a child process).
    const server = await startServerProcess('bench-env-start');
    cleanups.push(() => server.stop());
    const admin = new WarrenClient({ server: server.url, token: server.adminToken });
    const runnerDir = await mkdtemp(join(tmpdir(), 'warren-bench-env-runner-'));
    cleanups.push(() => rm(runnerDir, { recursive: true, force: true }));
    await chmod(runnerDir, 0o711); // environments' unprivileged roots must traverse it to their mounts
    const { selectOciRuntime } = await load<typeof RuntimeSelection>('packages/runner/dist/linux/runtime-selection.js');
    const { CgroupManager } = await load<typeof Cgroups>('packages/runner/dist/linux/cgroups.js');
    // The runner's own selection (config `runtime`, default auto: crun when its self-test passes, else runc),
    // with private state roots; BENCH_RUNTIME=runc|crun forces one.
    const stateRoots = { runc: `/run/warren/runc-bench-env-start-${process.pid}`, crun: `/run/warren/crun-bench-env-start-${process.pid}` };
    const runtime = await selectOciRuntime({
      prefer: (process.env.BENCH_RUNTIME as 'auto' | 'runc' | 'crun' | undefined) ?? 'auto',
      runcStateRoot: stateRoots.runc,
      crunStateRoot: stateRoots.crun,
      logger,
    });
    process.env.BENCH_RUNTIME_NAME = runtime.name;
    console.log(`OCI runtime: ${runtime.name}`);
    for (const root of Object.values(stateRoots)) {
      cleanups.push(() => rm(root, { recursive: true, force: true }));
      cleanups.push(() => rm(`${root}-exec`, { recursive: true, force: true }));
    }
    const cgroups = await CgroupManager.detect({ parent: `warren-bench-${process.pid}`, logger });
    cleanups.push(() => cgroups.removeParent());
    const runner: RunningRunner = await startRunner({
      server: server.url,
      token: server.runnerToken,
      name: 'bench-env-start',
      dataDir: runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      config: { slotOffset: SLOT_OFFSET, mirrors: { 'mcr.microsoft.com': [registry.url] } },
      // The host's nftables table is shared with test suites that may run at the same time; the firewall is
      // applied once per runner start, not per environment, so leaving it out does not change what is timed.
      linux: { firewall: false, runtime, cgroups },
      logger,
    });
    cleanups.push(() => runner.close());
    const watcher = new EnvironmentWatcher(admin);
    cleanups.push(() => watcher.close());
    const created: string[] = [];
    cleanups.push(async () => {
      for (const id of created) await admin.delete('Environment', id).catch(() => undefined);
      for (const id of created)
        await watcher.waitFor(id, 'Deleted', (environment) => environment.status.phase === 'Deleted', 60_000).catch(() => undefined);
    });

    // ---------------------------------------------------------------- warm-up: pulls and unpacks the image
    TimingLogger.phase = 'warm-up';
    {
      const t0 = performance.now();
      const environment = await admin.createEnvironment({ metadata: { name: 'bench-warm' }, spec: { source: { git: { url: repo.url } } } });
      created.push(environment.metadata.id);
      await watcher.waitFor(environment.metadata.id, 'Running', isRunning(environment.metadata.generation));
      await execTrue(admin, environment.metadata.id);
      console.log(`warm-up (image pull + unpack + first start): ${(performance.now() - t0).toFixed(0)} ms`);
      const stopped = await admin.setDesiredPhase(environment.metadata.id, 'Stopped');
      await watcher.waitFor(environment.metadata.id, 'Stopped', isStopped(stopped.metadata.generation));
    }

    // ---------------------------------------------------------------- (a) create → first exec
    TimingLogger.phase = 'create';
    // How long the shared main thread (server, runner, bench client) keeps callbacks waiting; printed with BENCH_LOG.
    const loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
    const measured: string[] = [];
    for (let run = 0; run < RUNS; run++) {
      const t0 = performance.now();
      mark('bench: create', { run });
      const environment = await admin.createEnvironment({
        metadata: { name: `bench-${run}` },
        spec: { source: { git: { url: repo.url } } },
      });
      created.push(environment.metadata.id);
      await watcher.waitFor(environment.metadata.id, 'Running', isRunning(environment.metadata.generation));
      const running = performance.now();
      mark('bench: Running seen', { run });
      const { grantMs, execMs } = await execTrue(admin, environment.metadata.id);
      figures.create.push(performance.now() - t0);
      figures.createSplit.runningMs.push(running - t0);
      figures.createSplit.grantMs.push(grantMs);
      figures.createSplit.execMs.push(execMs);
      measured.push(environment.metadata.id);
      TimingLogger.phase = 'stop';
      const stopped = await admin.setDesiredPhase(environment.metadata.id, 'Stopped');
      await watcher.waitFor(environment.metadata.id, 'Stopped', isStopped(stopped.metadata.generation));
      TimingLogger.phase = 'create';
    }

    loopDelay.disable();
    mark('bench: event loop delay during create runs', {
      p50Ms: loopDelay.percentile(50) / 1e6,
      p99Ms: loopDelay.percentile(99) / 1e6,
      maxMs: loopDelay.max / 1e6,
    });

    // ---------------------------------------------------------------- (b) start from stopped → first exec
    TimingLogger.phase = 'start';
    for (const id of measured) {
      const t0 = performance.now();
      mark('bench: start', { id });
      const patched = await admin.setDesiredPhase(id, 'Running');
      await watcher.waitFor(id, 'Running', isRunning(patched.metadata.generation));
      const running = performance.now();
      mark('bench: Running seen', { id });
      const { grantMs, execMs } = await execTrue(admin, id);
      figures.start.push(performance.now() - t0);
      figures.startSplit.runningMs.push(running - t0);
      figures.startSplit.grantMs.push(grantMs);
      figures.startSplit.execMs.push(execMs);
      TimingLogger.phase = 'stop';
      const stopped = await admin.setDesiredPhase(id, 'Stopped');
      await watcher.waitFor(id, 'Stopped', isStopped(stopped.metadata.generation));
      TimingLogger.phase = 'start';
    }

    // ---------------------------------------------------------------- baseline: the reference CLI on Docker
    TimingLogger.phase = 'reference';
    if (REFERENCE_RUNS > 0) await reference(figures, { image: images.base, repoUrl: repo.url, logger });
    return figures;
  } finally {
    await cleanup();
  }
}

/** `devcontainer up` + `devcontainer exec true` on the managed engine for the same repository and image. */
async function reference(figures: Figures, input: { image: string; repoUrl: string; logger: Logger }): Promise<void> {
  const builder = await load<typeof Builder>('packages/runner/dist/builder/index.js');
  const engineDir = await mkdtemp(join(tmpdir(), 'warren-bench-ref-'));
  const engine = new builder.DockerEngine({ dataDir: engineDir, logger: input.logger.child({ component: 'docker-engine' }) });
  try {
    try {
      await engine.ensureRunning();
    } catch (error) {
      if (error instanceof builder.DockerNotInstalledError) {
        figures.referenceSkipped = error.message;
        return;
      }
      throw error;
    }
    // What DevcontainerBuilder does for mirrored base images: pull from the mirror, tag with the original name.
    await engine.docker(['pull', '--quiet', input.image]);
    await engine.docker(['tag', input.image, IMAGE]);
    // The same repository, checked out the way a user of the reference CLI would.
    const workspaceDir = join(engineDir, 'workspace');
    await exec(['git', 'clone', '--quiet', input.repoUrl, workspaceDir]);
    for (let run = 0; run < REFERENCE_RUNS; run++) {
      const result = await builder.referenceUpAndExec({ workspaceDir, engine });
      figures.referenceUp.push(result.upMs);
      figures.referenceExec.push(result.execMs);
      figures.reference.push(result.upMs + result.execMs);
    }
  } finally {
    await engine.stop({ removeData: true }).catch((error: unknown) => console.error('engine stop failed:', error));
    await rm(engineDir, { recursive: true, force: true });
  }
}

function report(figures: Figures): void {
  const row = (cells: string[]) => console.log(cells.map((cell, index) => (index === 0 ? cell.padEnd(36) : cell.padStart(12))).join(''));
  const ms = (value: number) => (Number.isNaN(value) ? '-' : `${value.toFixed(0)} ms`);
  console.log(
    `\nenvironment start: ${RUNS} runs each, image cached, OCI runtime ${process.env.BENCH_RUNTIME_NAME ?? '?'}; reference: ${figures.reference.length} runs\n`,
  );
  row(['metric', 'p50', 'p95', 'min', 'max', 'target p50']);
  const line = (label: string, values: number[], target?: number) =>
    row([
      label,
      ms(percentile(values, 50)),
      ms(percentile(values, 95)),
      ms(Math.min(...values)),
      ms(Math.max(...values)),
      target ? `≤ ${target} ms` : '',
    ]);
  line('Warren create → first exec', figures.create, TARGETS.createP50);
  line('  until phase Running is seen', figures.createSplit.runningMs);
  line('  access grant', figures.createSplit.grantMs);
  line('  exec true (access API)', figures.createSplit.execMs);
  line('Warren start-from-stopped → exec', figures.start, TARGETS.startP50);
  line('  until phase Running is seen', figures.startSplit.runningMs);
  line('  access grant', figures.startSplit.grantMs);
  line('  exec true (access API)', figures.startSplit.execMs);
  if (REFERENCE_RUNS === 0) console.log('reference devcontainer up + exec: skipped (BENCH_REFERENCE_RUNS=0)');
  else if (figures.referenceSkipped) console.log(`reference devcontainer up + exec: skipped (${figures.referenceSkipped})`);
  else {
    line('reference up + exec true', figures.reference);
    line('  devcontainer up', figures.referenceUp);
    line('  devcontainer exec true', figures.referenceExec);
  }
  if (process.env['BENCH_BREAKDOWN'] === '0') return;
  for (const phase of ['create', 'start']) {
    const records = TimingLogger.records.get(phase);
    if (!records) continue;
    console.log(`\nper-step durations while measuring "${phase}" (logged durationMs; median per occurrence, total per run):`);
    const rows = [...records].map(([key, values]) => ({
      key,
      median: percentile(values, 50),
      perRun: values.reduce((a, b) => a + b, 0) / RUNS,
      count: values.length / RUNS,
    }));
    for (const entry of rows.sort((a, b) => b.perRun - a.perRun).slice(0, 25)) {
      console.log(
        `  ${entry.key.slice(0, 90).padEnd(90)} ${entry.median.toFixed(0).padStart(5)} ms ×${entry.count.toFixed(1).padStart(4)}  = ${entry.perRun.toFixed(0).padStart(5)} ms/run`,
      );
    }
  }
}

const figures = await main();
report(figures);
// Keep-alive sockets of fetch/ws may hold the loop open for a few seconds; the figures are out.
await sleep(10);
process.exit(0);
