// One start for tests that need server + runner: the control plane (PGlite), a runner (the Linux backend with a
// private runc state root and cgroup parent, or a given backend), and on request the e2e fixtures (registry with
// the test images, git server). dispose() deletes what the test left, stops everything and removes temp dirs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WarrenClient } from '@warren/api';
import {
  CgroupManager,
  type EnvironmentBackend,
  type RunnerConfigInput,
  type RunningRunner,
  RuncRuntime,
  type StartRunnerOptions,
  startRunner,
} from '@warren/runner';
import type { AppOptions } from '@warren/server';
import { type ControlPlane, startControlPlane } from './control-plane.js';
import { type Fixtures, startFixtures } from './fixtures.js';
import { deleteEnvironment } from './wait.js';

/** Options of {@link startHarness}. */
export interface HarnessOptions {
  /**
   * Names this test's host objects: temp dirs `warren-<name>-{server,runner}-*`, the runner `<name>-test`, the
   * runc state root `/run/warren/runc-<name>-test-<pid>` and the cgroup parent `warren-<name>-<pid>`.
   */
  name: string;
  /** Start the registry with the test images and the git server first (default false). */
  fixtures?: boolean;
  /** Tunables of the server's HTTP API. */
  app?: AppOptions;
  /** The runner's host backend; default the Linux backend (firewall off: the host table is shared between suites). */
  backend?: EnvironmentBackend;
  /** runner.json overrides; `heartbeatSeconds` defaults to 1. Give Linux runners their own `slotOffset` range. */
  config?: RunnerConfigInput;
  /** More startRunner options: the proxy, the SSH gateway, the activity interval, terminal tunables. */
  runner?: Pick<StartRunnerOptions, 'proxy' | 'sshListen' | 'activityIntervalMs' | 'terminal'>;
}

/** A running server + runner; see {@link startHarness}. */
export interface Harness {
  /** The e2e fixtures, when `fixtures: true`. */
  fixtures?: Fixtures;
  controlPlane: ControlPlane;
  /** The bootstrap admin's client (`controlPlane.admin`). */
  admin: WarrenClient;
  runner: RunningRunner;
  /** The runner's data directory. */
  runnerDir: string;
  /** The Linux backend's runc (private state root); absent with a given backend. */
  runtime?: RuncRuntime;
  /**
   * Deletes every environment and waits until the runner removed it from the host, stops the runner, the server
   * and the fixtures, and removes the runner's cgroup parent, runc state and temp directories. Every step runs
   * even when one fails; a failure is thrown at the end (several as an AggregateError). Safe to call twice.
   */
  dispose(): Promise<void>;
}

/** A {@link Harness} started with `fixtures: true`. */
export type HarnessWithFixtures = Harness & { fixtures: Fixtures };

/**
 * Starts the fixtures (when asked), the control plane and a runner registered with it.
 * The Linux backend needs root, runc, ip, cc and git; the fixtures docker-registry, skopeo and the test images.
 * @throws whatever a start throws; what was started is disposed of first.
 */
export function startHarness(options: HarnessOptions & { fixtures: true }): Promise<HarnessWithFixtures>;
export function startHarness(options: HarnessOptions): Promise<Harness>;
export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const cleanup: Array<() => Promise<unknown>> = [];
  let disposed: Promise<void> | undefined;
  const dispose = () =>
    (disposed ??= (async () => {
      const failures: unknown[] = [];
      for (const step of cleanup.reverse()) {
        try {
          await step();
        } catch (error) {
          failures.push(error);
        }
      }
      if (failures.length === 1 && failures[0] instanceof Error) throw failures[0];
      if (failures.length > 0) throw new AggregateError(failures, 'the integration harness did not stop cleanly');
    })());
  try {
    let fixtures: Fixtures | undefined;
    if (options.fixtures) {
      const started = await startFixtures();
      fixtures = started;
      cleanup.push(() => started.stop());
    }
    const controlPlane = await startControlPlane({ name: options.name, ...(options.app ? { app: options.app } : {}) });
    cleanup.push(() => controlPlane.dispose());
    const runnerDir = await mkdtemp(join(tmpdir(), `warren-${options.name}-runner-`));
    cleanup.push(() => rm(runnerDir, { recursive: true, force: true }));
    let runtime: RuncRuntime | undefined;
    let linux: StartRunnerOptions['linux'];
    if (!options.backend) {
      const ownRuntime = new RuncRuntime({ stateRoot: `/run/warren/runc-${options.name}-test-${process.pid}` });
      runtime = ownRuntime;
      cleanup.push(async () => {
        await rm(ownRuntime.stateRoot, { recursive: true, force: true });
        await rm(`${ownRuntime.stateRoot}-exec`, { recursive: true, force: true });
      });
      const cgroups = await CgroupManager.detect({ parent: `warren-${options.name}-${process.pid}` });
      cleanup.push(() => cgroups.removeParent().catch(() => false));
      linux = { firewall: false, runtime: ownRuntime, cgroups };
    }
    const runnerName = `${options.name}-test`;
    const runner = await startRunner({
      ...options.runner,
      server: controlPlane.url,
      token: await controlPlane.runnerToken(runnerName),
      name: runnerName,
      dataDir: runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      config: { heartbeatSeconds: 1, ...options.config },
      ...(options.backend ? { backend: options.backend } : { linux }),
    });
    cleanup.push(() => runner.close());
    // Runs first: the runner removes the environments' mounts, namespaces and cgroups while it and the server run.
    cleanup.push(() => deleteAllEnvironments(controlPlane));
    return {
      ...(fixtures ? { fixtures } : {}),
      controlPlane,
      admin: controlPlane.admin,
      runner,
      runnerDir,
      ...(runtime ? { runtime } : {}),
      dispose,
    };
  } catch (error) {
    await dispose().catch(() => undefined);
    throw error;
  }
}

/** Deletes every environment (as the admin) and waits until each is collected; nothing to do while the server is stopped. */
async function deleteAllEnvironments(controlPlane: ControlPlane): Promise<void> {
  if (!controlPlane.running) return;
  const { items } = await controlPlane.admin.list('Environment');
  await Promise.all(items.map((environment) => deleteEnvironment(controlPlane.admin, environment.metadata.id, 120_000)));
}
