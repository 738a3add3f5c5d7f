// Noisy-neighbour benchmark (issue 9): environment B's interactive latency — exec round trip through the runner's
// access API (p50, p99) and the wake-up lateness of 10 ms sleeps inside B (p50, p99) — with the host idle and
// while environment A runs busy loops on every core, with the CPU burst controller on and with static limits
// (runner.json cpuController: false). Also A's achieved CPU while B idles (part `latency`), and `exec true` into one
// `default` environment alone vs with 7 more Running (part `density`, density.ts). BENCH_PARTS picks the parts
// (comma-separated; default both). Prints figures; asserts nothing.
// Needs root, runc/crun, cc, docker-registry, skopeo, git and the test images (scripts/test-images.sh).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { exec, execInEnvironment } from '@warren/runner';
import { startBenchFixtures } from '../shared/fixtures.js';
import { startServerProcess } from '../shared/server-process.js';
import { deleteEnvironments, execTrueRoundTrips, f, percentile, sink, startBenchRunner, waitRunning } from './common.js';
import { DENSITY_ENVIRONMENTS, DENSITY_TARGET_RATIO, type DensityResult, measureDensity } from './density.js';

/** Exec round trips per phase. */
const EXECS = Number(process.env['BENCH_EXECS'] ?? 40);
/** Exec round trips per phase of part `density`. */
const DENSITY_EXECS = Number(process.env['BENCH_DENSITY_EXECS'] ?? 50);
const PARTS = new Set((process.env['BENCH_PARTS'] ?? 'latency,density').split(',').map((part) => part.trim()));
for (const part of PARTS)
  if (part !== 'latency' && part !== 'density') throw new Error(`BENCH_PARTS: unknown part ${part} (latency, density)`);
/** 10 ms sleeps per phase. */
const SLEEPS = Number(process.env['BENCH_SLEEPS'] ?? 300);
/** Slot range of this bench's runners, apart from the test suites and the other benches. */
const SLOT_OFFSET = Number(process.env['BENCH_SLOT_OFFSET'] ?? 15_600);
const CPUS = availableParallelism();
/** The class of A and B: a 500m guarantee, bursting to every core. */
const CLASS = { cpuMillicores: CPUS * 1000, requests: { cpuMillicores: 500 }, memoryBytes: 512 * 1024 ** 2, swapBytes: 0, pids: 4096 };
/** Issue 9 targets for B under a hog, with the controller. */
const TARGETS = { p99Ratio: 2, latenessP99Ms: 20, burstShare: 0.9 };

/** `bench/noisy-neighbour/dist/bench/noisy-neighbour/run.js` → the repository root. */
const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));

/** Runs `argv` in the environment through the access API; @returns its stdout. */
async function run(admin: WarrenClient, id: string, argv: string[], stdin?: Buffer): Promise<string> {
  let output = '';
  const stdout = new Writable({ write: (chunk: Buffer, _encoding, callback) => void ((output += chunk.toString()), callback()) });
  const code = await execInEnvironment(await admin.createAccessGrant(id), argv, {
    stdout,
    stderr: sink(),
    ...(stdin ? { stdin: Readable.from([stdin]) } : {}),
  });
  if (code !== 0) throw new Error(`${argv.join(' ')} exited with ${code}`);
  return output;
}

/** Figures of one phase for B (ms), and A's CPU (millicores) during it. */
interface Phase {
  execP50: number;
  execP99: number;
  latenessP50: number;
  latenessP99: number;
  aMillicores?: number;
}

async function measureB(admin: WarrenClient, idB: string): Promise<Omit<Phase, 'aMillicores'>> {
  const execs = await execTrueRoundTrips(admin, idB, EXECS);
  const lateness = (await run(admin, idB, ['/tmp/lateness', String(SLEEPS)]))
    .trim()
    .split('\n')
    .map((line) => Number(line) / 1000);
  return {
    execP50: percentile(execs, 50),
    execP99: percentile(execs, 99),
    latenessP50: percentile(lateness, 50),
    latenessP99: percentile(lateness, 99),
  };
}

/** CPU time of A's cgroup (cpuacct.usage on v1, cpu.stat usage_usec on v2), nanoseconds. */
async function usageOf(parent: string, id: string): Promise<number> {
  try {
    return Number(await readFile(`/sys/fs/cgroup/cpuacct/${parent}/${id}/cpuacct.usage`, 'utf8'));
  } catch {
    const stat = await readFile(`/sys/fs/cgroup/${parent}/${id}/cpu.stat`, 'utf8');
    return Number(/usage_usec (\d+)/.exec(stat)?.[1] ?? 0) * 1000;
  }
}

/** What the parts measured; a part not run is absent. */
interface Results {
  latency?: Record<string, Record<string, Phase>>;
  density?: DensityResult;
}

async function main(): Promise<Results> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const results: Results = {};
  try {
    const lateness = join(await mkdtemp(join(tmpdir(), 'warren-bench-nn-')), 'lateness');
    cleanups.push(() => rm(join(lateness, '..'), { recursive: true, force: true }));
    await exec(['cc', '-static', '-O2', '-o', lateness, join(repoRoot, 'bench/noisy-neighbour/lateness.c')]);
    const latenessBinary = await readFile(lateness);

    const { repo } = await startBenchFixtures(
      'nn',
      (images) => ({ '.devcontainer/devcontainer.json': `{ "image": "${images.base}" }\n` }),
      cleanups,
    );
    const server = await startServerProcess('bench-nn');
    cleanups.push(() => server.stop());
    const admin = new WarrenClient({ server: server.url, token: server.adminToken });
    await admin.createEnvironmentClass({ metadata: { name: 'nn' }, spec: CLASS });

    const latency: Record<string, Record<string, Phase>> = {};
    for (const mode of PARTS.has('latency') ? (['static', 'controller'] as const) : []) {
      const { runner, parent, close } = await startBenchRunner(server, {
        name: `bench-nn-${mode}`,
        slotOffset: SLOT_OFFSET + (mode === 'static' ? 0 : 10),
        maxEnvironments: 4,
        cpuController: mode === 'controller',
      });
      const ids: string[] = [];
      try {
        for (const environment of ['a', 'b']) {
          const created = await admin.createEnvironment({
            metadata: { name: `nn-${mode}-${environment}` },
            spec: { className: 'nn', source: { git: { url: repo.url } } },
          });
          ids.push(created.metadata.id);
        }
        const [idA, idB] = ids as [string, string];
        for (const id of ids) await waitRunning(admin, id);
        await run(admin, idB, ['sh', '-c', 'cat > /tmp/lateness && chmod +x /tmp/lateness'], latenessBinary);
        const phases: Record<string, Phase> = {};
        await sleep(2000);
        phases['idle'] = await measureB(admin, idB);
        // A: a busy loop per host CPU, detached from the exec.
        await run(admin, idA, [
          'sh',
          '-c',
          `for i in $(seq ${CPUS}); do setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & echo $! >> /tmp/hog.pids; done`,
        ]);
        await sleep(2000); // a few controller periods
        const before = await usageOf(parent, idA);
        const started = process.hrtime.bigint();
        await sleep(3000);
        const aMillicores = ((await usageOf(parent, idA)) - before) / (Number(process.hrtime.bigint() - started) / 1000);
        phases['A busy loops'] = { ...(await measureB(admin, idB)), aMillicores };
        await run(admin, idA, ['sh', '-c', 'kill $(cat /tmp/hog.pids)']);
        if (runner.cpuController) {
          console.log(`${mode}: ${runner.cpuController.quotaChanges()} quota changes; latest:`);
          for (const decision of runner.cpuController.latestDecisions())
            console.log(`  ${decision.name} ${decision.reason}: ${decision.message}`);
        }
        latency[mode] = phases;
      } finally {
        await deleteEnvironments(admin, ids);
        await close();
      }
    }
    if (PARTS.has('latency')) results.latency = latency;
    if (PARTS.has('density')) results.density = await measureDensity(admin, server, repo.url, SLOT_OFFSET + 20, DENSITY_EXECS);
    return results;
  } finally {
    for (const step of cleanups.reverse()) await step().catch((error: unknown) => console.error('cleanup:', error));
  }
}

function report(results: Results): void {
  if (results.latency) reportLatency(results.latency);
  if (results.density) reportDensity(results.density);
}

function reportDensity({ one, crowded, environments }: DensityResult): void {
  console.log(
    `\n# bench/noisy-neighbour density — ${new Date().toISOString().slice(0, 10)}, ${CPUS} CPUs, class default, ${DENSITY_EXECS} execs per phase`,
  );
  console.log(`| environments Running | exec true p50 / p99 (ms) |`);
  console.log('|---|---|');
  console.log(`| 1 | ${f(one.p50)} / ${f(one.p99)} |`);
  console.log(`| ${environments} | ${f(crowded.p50)} / ${f(crowded.p99)} |`);
  const ratio = crowded.p50 / one.p50;
  console.log(
    `\nexec p50 with ${environments} environments: ${f(ratio, 2)}× a single environment's (target <= ${DENSITY_TARGET_RATIO}×: ${ratio <= DENSITY_TARGET_RATIO ? 'met' : 'missed'})` +
      (environments === DENSITY_ENVIRONMENTS ? '' : ` — only ${environments} of ${DENSITY_ENVIRONMENTS} started`),
  );
}

function reportLatency(results: Record<string, Record<string, Phase>>): void {
  console.log(
    `\n# bench/noisy-neighbour — ${new Date().toISOString().slice(0, 10)}, ${CPUS} CPUs, class nn: request 500m, limit ${CLASS.cpuMillicores}m`,
  );
  console.log('| limits | phase | B exec p50 / p99 (ms) | B 10 ms sleep lateness p50 / p99 (ms) | A CPU (m) |');
  console.log('|---|---|---|---|---|');
  for (const [mode, phases] of Object.entries(results)) {
    for (const [phase, figures] of Object.entries(phases)) {
      console.log(
        `| ${mode} | ${phase} | ${f(figures.execP50)} / ${f(figures.execP99)} | ${f(figures.latenessP50, 2)} / ${f(figures.latenessP99, 2)} | ${figures.aMillicores === undefined ? '—' : f(figures.aMillicores, 0)} |`,
      );
    }
  }
  const controller = results['controller'];
  if (controller?.['idle'] && controller['A busy loops']) {
    const idle = controller['idle'];
    const hog = controller['A busy loops'];
    console.log(
      `\ncontroller, B under A's busy loops: exec p99 ${f(hog.execP99 / idle.execP99, 2)}× idle (target <= ${TARGETS.p99Ratio}×), ` +
        `lateness p99 ${f(hog.latenessP99, 2)} ms (target <= ${TARGETS.latenessP99Ms} ms), ` +
        `A ${f((hog.aMillicores ?? 0) / 1000, 2)} CPUs of ${CPUS} (target >= ${TARGETS.burstShare * 100} % of what B leaves idle)`,
    );
  }
}

main().then(
  (results) => {
    report(results);
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
