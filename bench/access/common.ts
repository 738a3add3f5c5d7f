// Shared by the access benchmark's files (run.ts, proxy.ts, ssh.ts): its settings (from BENCH_* variables), the
// figures it collects, their statistics and formatting, and helpers to load the runner's dist and run commands.
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { WarrenClient } from '@warren/api';
import { execInEnvironment } from '@warren/runner';

/** Seconds of each wrk run. */
export const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
/**
 * Rounds of direct and proxied wrk runs, back to back (their order alternating from round to round). Each round
 * gives a paired ratio proxy/direct; the median ratio is reported with its range, since the host's speed drifts
 * between rounds by more than the proxy's share (bench/access/README.md).
 */
export const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
/** Connections of the throughput runs (the latency runs use 1). */
export const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 16);
export const SSH_RUNS = Number(process.env['BENCH_SSH_RUNS'] ?? 30);
export const SESSIONS = Number(process.env['BENCH_SESSIONS'] ?? 200);
/** Who serves the proxy's address (`BENCH_PROXY_FRONT`: `native`, the default as in the runner, or `node`). */
export const PROXY_FRONT = ((front: string): 'native' | 'node' => {
  if (front !== 'native' && front !== 'node') throw new Error(`BENCH_PROXY_FRONT: "${front}" is neither native nor node`);
  return front;
})(process.env['BENCH_PROXY_FRONT'] ?? 'native');
/** Which parts run (`BENCH_PARTS`, a comma list of `proxy`, `ssh`, `sessions`; default all). */
export const PARTS = new Set(
  (process.env['BENCH_PARTS'] ?? 'proxy,ssh,sessions')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== ''),
);
for (const part of PARTS)
  if (!['proxy', 'ssh', 'sessions'].includes(part)) throw new Error(`BENCH_PARTS: unknown part "${part}" (proxy, ssh, sessions)`);
/** Slot range of this bench's runner (15500..15529), apart from the test suites and the other benches. */
export const SLOT_OFFSET = Number(process.env['BENCH_SLOT_OFFSET'] ?? 15_500);
/** Issue 4 targets. */
export const TARGETS = { throughputRatio: 0.9, addedP50Ms: 1, sshExecP50Ms: 100 };
export const APP_PORT = 3000;
/** The heavier app paths measured besides `/` (throughput only). */
export const HEAVIER = [
  { path: '/asset', label: '32 KiB module' },
  { path: '/page', label: 'rendered page' },
];

/** `bench/access/dist/bench/access/*.js` → the repository root. */
export const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));
/** Imports a module of the built repository (e.g. `packages/runner/dist/...`) by its path from the repository root. */
export const load = <T>(path: string) => import(pathToFileURL(join(repoRoot, path)).href) as Promise<T>;

/** The `p`th percentile (nearest rank) of `values`; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
/** The median (50th percentile, nearest rank) of `values`. */
export const median = (values: number[]) => percentile(values, 50);

/** One wrk run: requests per second and the latency distribution (ms). */
export interface WrkResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

/** Everything the benchmark measures, filled part by part and printed by the report functions. */
export interface Figures {
  /** Who served the proxy's address (RunningRunner.proxyFront): the native front, or Node when it could not start. */
  front: string;
  /** Throughput runs through relay-bound.c (the ceiling for any proxy here), by path (`/`, then the heavier ones). */
  bound: Record<string, WrkResult[]>;
  /** Throughput runs of the heavier app paths, by path. */
  heavier: Record<string, { direct: WrkResult[]; proxy: WrkResult[] }>;
  direct: { throughput: WrkResult[]; latency: WrkResult[] };
  proxy: { throughput: WrkResult[]; latency: WrkResult[] };
  openssh: number[];
  ssh2Warm: number[];
  ssh2Cold: number[];
  accessExec: number[];
  sessions: { ok: number; failed: number; wallMs: number; perSession: number[]; firstError?: string };
}

/** A number with `digits` decimals, or `n/a`. */
export const f = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
/** How a figure compares with its target. */
export const mark = (ok: boolean) => (ok ? 'met' : 'MISSED');

/** A stream that discards what it is given. */
export const sink = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });

/** Output of a command run in the environment through the access API. */
export async function run(admin: WarrenClient, id: string, argv: string[]): Promise<string> {
  let output = '';
  const stdout = new Writable({ write: (chunk: Buffer, _encoding, callback) => void ((output += chunk.toString()), callback()) });
  const code = await execInEnvironment(await admin.createAccessGrant(id), argv, { stdout, stderr: sink() });
  if (code !== 0) throw new Error(`${argv.join(' ')} exited with ${code}`);
  return output;
}
