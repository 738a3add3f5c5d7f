// Shared pieces of bench/noisy-neighbour's parts: percentiles, `exec true` round trips through the access API,
// waiting for an environment, and a runner set up the same way for every part (runc, private state root, cgroup
// parent and data dir, firewall off) that removes what it made when closed.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { type RunningRunner, execInEnvironment, startRunner } from '@warren/runner';

/**
 * The p-th percentile (nearest rank) of `values`.
 * @param p 0..100.
 * @returns NaN for no values.
 */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** `value` with `digits` decimals, or `n/a` when it is not finite. */
export const f = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');

/** A stream that drops what is written to it. */
export const sink = (): Writable => new Writable({ write: (_chunk, _encoding, callback) => callback() });

/**
 * Runs `exec true` in the environment `count` times in a row through the runner's access API, with one access
 * grant.
 * @returns each round trip, milliseconds.
 * @throws {Error} when an exec exits non-zero.
 */
export async function execTrueRoundTrips(admin: WarrenClient, id: string, count: number): Promise<number[]> {
  const grant = await admin.createAccessGrant(id);
  const execs: number[] = [];
  for (let index = 0; index < count; index++) {
    const started = performance.now();
    const code = await execInEnvironment(grant, ['true'], { stdout: sink(), stderr: sink() });
    if (code !== 0) throw new Error(`exec true exited with ${code}`);
    execs.push(performance.now() - started);
  }
  return execs;
}

/**
 * Waits (up to 5 minutes) until the environment is Running.
 * @throws {Error} when it fails or does not start in time.
 */
export async function waitRunning(admin: WarrenClient, id: string): Promise<void> {
  for (let attempt = 0; attempt < 3000; attempt++) {
    const environment = await admin.get('Environment', id);
    if (environment.status.phase === 'Running') return;
    if (environment.status.phase === 'Failed')
      throw new Error(`environment ${id} failed: ${JSON.stringify(environment.status.conditions)}`);
    await sleep(100);
  }
  throw new Error(`environment ${id} did not start`);
}

/** Deletes the environments and waits (up to 60 s each) until they are gone; never throws. */
export async function deleteEnvironments(admin: WarrenClient, ids: string[]): Promise<void> {
  for (const id of ids) await admin.delete('Environment', id).catch(() => undefined);
  for (const id of ids) {
    for (let attempt = 0; attempt < 600; attempt++) {
      if (
        await admin.get('Environment', id).then(
          () => false,
          () => true,
        )
      )
        break;
      await sleep(100);
    }
  }
}

/** A runner started by {@link startBenchRunner}. */
export interface BenchRunner {
  runner: RunningRunner;
  /** Its cgroup parent (under each controller's hierarchy). */
  parent: string;
  /** Closes the runner and removes its cgroup parent, runtime state and data dir; never throws. */
  close: () => Promise<void>;
}

/** What differs between the parts' runners. */
export interface BenchRunnerOptions {
  /** Names the runner's cgroup parent, runtime state root and data dir (with the bench's pid). */
  name: string;
  /** First slot; the part uses `[slotOffset, slotOffset + maxEnvironments)`. */
  slotOffset: number;
  maxEnvironments: number;
  /** runner.json `cpuController`. */
  cpuController: boolean;
}

/**
 * Starts a runner in this process for the bench's control plane: runc with a private state root, its own cgroup
 * parent and data dir, access API on 127.0.0.1, heartbeat 1 s, firewall off. The runner token names it `bench-nn`,
 * so a part's runner takes the Runner over from the previous part's.
 * @param server the control plane's URL and runner token.
 */
export async function startBenchRunner(server: { url: string; runnerToken: string }, options: BenchRunnerOptions): Promise<BenchRunner> {
  const parent = `warren-${options.name}-${process.pid}`;
  const runnerDir = await mkdtemp(join(tmpdir(), `warren-${options.name}-runner-`));
  await chmod(runnerDir, 0o711);
  const { CgroupManager, RuncRuntime } = await import('@warren/runner');
  const runtime = new RuncRuntime({ stateRoot: `/run/warren/runc-${options.name}-${process.pid}` });
  const cgroups = await CgroupManager.detect({ parent });
  const cleanUp = async () => {
    await cgroups.removeParent().catch(() => false);
    await rm(runtime.stateRoot, { recursive: true, force: true });
    await rm(`${runtime.stateRoot}-exec`, { recursive: true, force: true });
    await rm(runnerDir, { recursive: true, force: true });
  };
  let runner: RunningRunner;
  try {
    runner = await startRunner({
      server: server.url,
      token: server.runnerToken,
      name: 'bench-nn',
      dataDir: runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      config: {
        slotOffset: options.slotOffset,
        maxEnvironments: options.maxEnvironments,
        heartbeatSeconds: 1,
        cpuController: options.cpuController,
      },
      linux: { firewall: false, runtime, cgroups },
    });
  } catch (error) {
    await cleanUp();
    throw error;
  }
  return {
    runner,
    parent,
    close: async () => {
      await runner.close().catch((error: unknown) => console.error('runner close:', error));
      await cleanUp().catch((error: unknown) => console.error('runner cleanup:', error));
    },
  };
}
