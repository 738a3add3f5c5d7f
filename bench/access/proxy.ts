// The access benchmark's HTTP part: wrk against the app directly, through the runner's proxy and through
// relay-bound.c (the ceiling for any proxy), in interleaved rounds; and its report.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '@warren/runner';
import { freePort } from '../../e2e/fixtures/process.js';
import { APP_PORT, CONNECTIONS, type Figures, HEAVIER, ROUNDS, SECONDS, TARGETS, type WrkResult, f, mark, median } from './common.js';

/** wrk prints durations as `123.45us`, `1.20ms` or `1.00s`. */
function wrkDuration(text: string): number {
  const match = /^([0-9.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 'ms' ? value : match[2] === 's' ? value * 1000 : value * 60_000;
}

/**
 * Compiles relay-bound.c (cc -O2, into a temp dir) and starts it on a free loopback port, relaying to
 * `address:port` (the app in the environment).
 * @returns its URL and a stop function.
 * @throws {Error} when it cannot be compiled or started.
 */
async function startRelayBound(address: string, port: number): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-relay-'));
  const binary = join(dir, 'relay-bound');
  await exec(['cc', '-O2', '-o', binary, fileURLToPath(new URL('../../../relay-bound.c', import.meta.url))]);
  const listen = await freePort();
  const child = spawn(binary, [String(listen), address, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`relay-bound exited (code ${code})`)));
  });
  return {
    url: `http://127.0.0.1:${listen}/`,
    stop: async () => {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs wrk (one thread: the host has few cores and the proxy, app and wrk share them) against `url`. */
async function wrk(url: string, connections: number, host?: string): Promise<WrkResult> {
  const argv = ['wrk', '-t1', `-c${connections}`, `-d${SECONDS}s`, '--latency', ...(host ? ['-H', `Host: ${host}`] : []), url];
  const { stdout } = await exec(argv, { timeoutMs: (SECONDS + 30) * 1000 });
  const rps = /Requests\/sec:\s+([0-9.]+)/.exec(stdout);
  const p50 = /^\s+50%\s+(\S+)/m.exec(stdout);
  const p99 = /^\s+99%\s+(\S+)/m.exec(stdout);
  const errors = /Non-2xx or 3xx responses:\s+([0-9]+)/.exec(stdout);
  const socketErrors = /Socket errors:.*?([0-9]+).*?([0-9]+).*?([0-9]+).*?([0-9]+)/.exec(stdout);
  if (!rps || !p50 || !p99) throw new Error(`unexpected wrk output:\n${stdout}`);
  const socketErrorCount = socketErrors ? socketErrors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0;
  return {
    requestsPerSecond: Number(rps[1]),
    p50Ms: wrkDuration(p50[1]!),
    p99Ms: wrkDuration(p99[1]!),
    errors: Number(errors?.[1] ?? 0) + socketErrorCount,
  };
}

/** Where the app answers: directly at the environment's address, and through the proxy (by Host header). */
export interface ProxyTargets {
  /** The environment's IPv4 address. */
  address: string;
  directUrl: string;
  proxyUrl: string;
  proxyHost: string;
}

/**
 * Runs the HTTP rounds (throughput, latency at one connection, the heavier paths, the relay-bound ceiling) into
 * `figures`; relay-bound's stop is pushed onto `cleanups`.
 */
export async function measureProxy(figures: Figures, targets: ProxyTargets, cleanups: Array<() => Promise<unknown>>): Promise<void> {
  const { address, directUrl, proxyUrl, proxyHost } = targets;
  const bound = await startRelayBound(address, APP_PORT);
  cleanups.push(() => bound.stop());
  await wrk(directUrl, CONNECTIONS); // warm-up (JIT of the app and the proxy)
  await wrk(proxyUrl, CONNECTIONS, proxyHost);
  /** Runs both, in the order of the round (even: direct first, odd: proxy first). */
  const pair = async (round: number, direct: () => Promise<WrkResult>, proxied: () => Promise<WrkResult>) => {
    if (round % 2 === 0) return { direct: await direct(), proxied: await proxied() };
    const second = await proxied();
    return { direct: await direct(), proxied: second };
  };
  for (let round = 0; round < ROUNDS; round++) {
    const plain = await pair(
      round,
      () => wrk(directUrl, CONNECTIONS),
      () => wrk(proxyUrl, CONNECTIONS, proxyHost),
    );
    figures.direct.throughput.push(plain.direct);
    figures.proxy.throughput.push(plain.proxied);
    for (const path of Object.keys(figures.bound)) figures.bound[path]!.push(await wrk(`${bound.url}${path.slice(1)}`, CONNECTIONS));
    const latency = await pair(
      round,
      () => wrk(directUrl, 1),
      () => wrk(proxyUrl, 1, proxyHost),
    );
    figures.direct.latency.push(latency.direct);
    figures.proxy.latency.push(latency.proxied);
    for (const { path } of HEAVIER) {
      const heavier = await pair(
        round,
        () => wrk(`${directUrl}${path.slice(1)}`, CONNECTIONS),
        () => wrk(`${proxyUrl}${path.slice(1)}`, CONNECTIONS, proxyHost),
      );
      figures.heavier[path]!.direct.push(heavier.direct);
      figures.heavier[path]!.proxy.push(heavier.proxied);
    }
  }
}

/** The paired ratios `proxied[i] / direct[i]` of each round (requests per second): their median, lowest and highest. */
function pairedRatio(direct: WrkResult[], proxied: WrkResult[]): { median: number; low: number; high: number } {
  const ratios = direct.map((result, round) => proxied[round]!.requestsPerSecond / result.requestsPerSecond);
  return { median: median(ratios), low: Math.min(...ratios), high: Math.max(...ratios) };
}

/** Prints the HTTP figures beside the direct baseline and the targets. */
export function reportProxy(figures: Figures): void {
  const byRps = (results: WrkResult[]) =>
    [...results].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond)[Math.floor(results.length / 2)]!;
  const range = (paired: { low: number; high: number }) => `(rounds ${f(paired.low * 100, 0)}-${f(paired.high * 100, 0)} %)`;
  const directT = byRps(figures.direct.throughput);
  const proxyT = byRps(figures.proxy.throughput);
  const directP50 = median(figures.direct.latency.map((result) => result.p50Ms));
  const proxyP50 = median(figures.proxy.latency.map((result) => result.p50Ms));
  const directL = median(figures.direct.latency.map((result) => result.requestsPerSecond));
  const proxyL = median(figures.proxy.latency.map((result) => result.requestsPerSecond));
  const paired = pairedRatio(figures.direct.throughput, figures.proxy.throughput);
  const ratio = paired.median;
  const added = proxyP50 - directP50;
  const errors = [...figures.direct.throughput, ...figures.proxy.throughput, ...figures.direct.latency, ...figures.proxy.latency].reduce(
    (sum, result) => sum + result.errors,
    0,
  );
  console.log(
    `\nHTTP: ${ROUNDS} rounds × ${SECONDS} s per wrk run; req/s: median run; ratio: median of the rounds' paired ratios; proxy served by the ${figures.front} front\n`,
  );
  console.log('HTTP (wrk, 1 thread)                  direct (baseline)    through proxy    target');
  console.log(
    `throughput, ${String(CONNECTIONS).padStart(2)} connections (req/s)   ${f(directT.requestsPerSecond, 0).padStart(12)}   ${f(proxyT.requestsPerSecond, 0).padStart(14)}    ratio ${f(ratio * 100)} % (≥ ${TARGETS.throughputRatio * 100} %: ${mark(ratio >= TARGETS.throughputRatio)}) ${range(paired)}`,
  );
  console.log(
    `  p50 / p99 at that load (ms)        ${`${f(directT.p50Ms, 2)} / ${f(directT.p99Ms, 2)}`.padStart(12)}   ${`${f(proxyT.p50Ms, 2)} / ${f(proxyT.p99Ms, 2)}`.padStart(14)}`,
  );
  console.log(
    `latency, 1 connection: p50 (ms)       ${f(directP50, 3).padStart(12)}   ${f(proxyP50, 3).padStart(14)}    added ${f(added, 3)} ms (≤ ${TARGETS.addedP50Ms} ms: ${mark(added <= TARGETS.addedP50Ms)})`,
  );
  console.log(`  req/s at 1 connection              ${f(directL, 0).padStart(12)}   ${f(proxyL, 0).padStart(14)}`);
  const boundOf = (path: string) => median(figures.bound[path]!.map((result) => result.requestsPerSecond));
  for (const { path, label } of HEAVIER) {
    const runs = figures.heavier[path]!;
    const direct = median(runs.direct.map((result) => result.requestsPerSecond));
    const proxied = median(runs.proxy.map((result) => result.requestsPerSecond));
    const shares = pairedRatio(runs.direct, runs.proxy);
    const share = shares.median;
    console.log(
      `throughput ${`${path} (${label})`.padEnd(27)} ${f(direct, 0).padStart(12)}   ${f(proxied, 0).padStart(14)}    ratio ${f(share * 100)} % (≥ ${TARGETS.throughputRatio * 100} %: ${mark(share >= TARGETS.throughputRatio)}) ${range(shares)}`,
    );
  }
  console.log(`\nceiling for any proxy on this host: relay-bound.c (C, splice, no HTTP processing), 16 connections`);
  for (const path of Object.keys(figures.bound)) {
    const ceiling = pairedRatio(path === '/' ? figures.direct.throughput : figures.heavier[path]!.direct, figures.bound[path]!);
    console.log(`  ${path.padEnd(8)} ${f(boundOf(path), 0).padStart(8)} req/s = ${f(ceiling.median * 100)} % of direct ${range(ceiling)}`);
  }
  const heavierErrors = [
    ...Object.values(figures.heavier).flatMap((runs) => [...runs.direct, ...runs.proxy]),
    ...Object.values(figures.bound).flat(),
  ].reduce((sum, result) => sum + result.errors, 0);
  console.log(`  errors (non-2xx + socket), all runs: ${errors + heavierErrors}`);
}
