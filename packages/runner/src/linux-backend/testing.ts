// Test helpers for the Linux backend on the real host (tests only): a host of its own per test file (fixtures, data
// dir, OCI runtime and cgroup parent named after the test, all removed again), backends and reconcilers over it,
// environments with host-unique ids, and execs whose output is collected.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Environment, EnvironmentStatus } from '@warren/api';
import { silentLogger } from '@warren/base';
import { type Fixtures, startFixtures } from '../../../../e2e/harness/index.js';
import { DockerEngine } from '../builder/index.js';
import { resolveRunnerConfig } from '../config.js';
import { type EnvironmentBackend, EnvironmentReconciler } from '../environment/index.js';
import { withSpec } from '../environment/testing.js';
import { CgroupManager, type OciRuntime, RuncRuntime, selectOciRuntime } from '../linux/index.js';
import { type ExecOutput, outputOf } from '../linux/testing.js';
import type { LinuxBackendOptions } from './context.js';
import { LinuxBackend } from './linux-backend.js';

/** Options of {@link startBackendHost}. */
export interface BackendHostOptions {
  /**
   * Names this test's host objects: the data dir `<tmp>/warren-<name>-*`, the cgroup parent `warren-<name>-test-<pid>`
   * and the state roots `/run/warren/runc-<name>-test-<pid>` (and `crun-` with `runtime: 'auto'`).
   */
  name: string;
  /** `runc` (default): runc alone; `auto`: chosen as in production (crun when its self-test passes, else runc). */
  runtime?: 'runc' | 'auto';
}

/** What {@link BackendHost.createBackend} varies; the rest is the host's (data dir, runtime, cgroups, no firewall). */
export interface TestBackendOptions extends Pick<LinuxBackendOptions, 'environmentClass' | 'execAgent'> {
  /** The runner config's `slotOffset`: give each test file a range of its own (kernel object names are host-wide). */
  slotOffset: number;
  /** The runner config's `stopGraceSeconds`; default the config's. */
  stopGraceSeconds?: number;
}

/** A test's share of the host; see {@link startBackendHost}. */
export interface BackendHost {
  /** The e2e fixtures: registry with the test images (default image `images.busybox`) and git server. */
  fixtures: Fixtures;
  /** The backends' data directory. */
  dataDir: string;
  runtime: OciRuntime;
  cgroups: CgroupManager;
  /** A new LinuxBackend over this host (several share it, as runners restarted over the same host would). */
  createBackend(options: TestBackendOptions): Promise<LinuxBackend>;
  /**
   * Removes every environment left (through the last backend created), stops the data dir's Docker engine, removes
   * the cgroup parent, state roots and data dir, and stops the fixtures. Each step runs even when one fails.
   */
  dispose(): Promise<void>;
}

/**
 * Starts the fixtures and prepares a data dir, an OCI runtime with private state roots and a cgroup parent for
 * the LinuxBackend tests of one file. Needs root, runc (crun optional), docker-registry, skopeo and the test images.
 * @throws whatever a start throws; what was started is removed first.
 */
export async function startBackendHost(options: BackendHostOptions): Promise<BackendHost> {
  const cleanup: Array<() => Promise<unknown>> = [];
  const dispose = async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => {});
  };
  try {
    const fixtures = await startFixtures();
    cleanup.push(() => fixtures.stop());
    const dataDir = await mkdtemp(join(tmpdir(), `warren-${options.name}-`));
    cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
    const stateRoots = [`/run/warren/runc-${options.name}-test-${process.pid}`];
    if (options.runtime === 'auto') stateRoots.push(`/run/warren/crun-${options.name}-test-${process.pid}`);
    cleanup.push(async () => {
      for (const root of stateRoots) {
        await rm(root, { recursive: true, force: true });
        await rm(`${root}-exec`, { recursive: true, force: true });
      }
    });
    const cgroups = await CgroupManager.detect({ parent: `warren-${options.name}-test-${process.pid}` });
    cleanup.push(() => cgroups.removeParent());
    const runtime =
      options.runtime === 'auto'
        ? await selectOciRuntime({ runcStateRoot: stateRoots[0], crunStateRoot: stateRoots[1] })
        : new RuncRuntime({ stateRoot: stateRoots[0] });
    const backends: LinuxBackend[] = [];
    cleanup.push(() => new DockerEngine({ dataDir }).stop());
    cleanup.push(async () => {
      const backend = backends.at(-1);
      if (!backend) return;
      const context = { signal: new AbortController().signal, logger: silentLogger, onProgress: () => {} };
      for (const id of await backend.listEnvironments()) await backend.remove(id, context).catch(() => {});
    });
    const createBackend = async (backendOptions: TestBackendOptions) => {
      const { slotOffset, stopGraceSeconds, ...rest } = backendOptions;
      const backend = await LinuxBackend.create({
        dataDir,
        config: resolveRunnerConfig({
          defaultImage: fixtures.images.busybox,
          ...(stopGraceSeconds !== undefined ? { stopGraceSeconds } : {}),
          slotOffset,
        }),
        runtime,
        cgroups,
        // The firewall table is shared by every runner on the host; these tests do not need it.
        firewall: false,
        ...rest,
      });
      backends.push(backend);
      return backend;
    };
    return { fixtures, dataDir, runtime, cgroups, createBackend, dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

/**
 * A reconciler over `backend` whose status writes return the environment with the new status; each written status
 * is also appended (a copy) to `statuses` when given.
 */
export function makeReconciler(backend: EnvironmentBackend, stopGraceSeconds: number, statuses?: EnvironmentStatus[]) {
  return new EnvironmentReconciler({
    backend,
    stopGraceSeconds,
    writeStatus: (environment, status) => {
      statuses?.push(structuredClone(status));
      return Promise.resolve({ ...environment, status: structuredClone(status) });
    },
  });
}

let serial = 0;

/**
 * A Pending environment (generation 1, desired Running, class `default` unless `spec` says otherwise) for the
 * repository at `url`, with an id unique on the host: `env-<prefix><pid>x<n>`, named `<prefix>-<n>`.
 */
export function makeEnvironment(
  prefix: string,
  url: string,
  spec: Partial<Pick<Environment['spec'], 'desiredPhase' | 'className'>> = {},
): Environment {
  serial++;
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: {
      id: `env-${prefix}${process.pid}x${serial}`,
      name: `${prefix}-${serial}`,
      generation: 1,
      resourceVersion: '1',
      createdTime: new Date().toISOString(),
      labels: {},
      ownerId: 'u',
    },
    spec: {
      desiredPhase: 'Running',
      source: { git: { url } },
      devcontainer: {},
      className: 'default',
      ports: [],
      timeouts: { inactivitySeconds: 0 },
      ...spec,
    },
    status: { phase: 'Pending', observedGeneration: 0, conditions: [], ports: [] },
  };
}

/** `environment`'s next generation, asking for `desiredPhase`. */
export function next(environment: Environment, desiredPhase: Environment['spec']['desiredPhase']): Environment {
  return withSpec(environment, { desiredPhase });
}

/** Options of {@link execOutput}: the exec's user, working directory and extra environment, and its stdin. */
export interface ExecOutputOptions {
  user?: string;
  cwd?: string;
  env?: string[];
  input?: string;
}

/** Runs `argv` in environment `id` without a terminal and returns its exit code, stdout and stderr. */
export async function execOutput(
  backend: EnvironmentBackend,
  id: string,
  argv: string[],
  options: ExecOutputOptions = {},
): Promise<ExecOutput> {
  const { input, ...request } = options;
  return outputOf(await backend.exec(id, { argv, tty: false, ...request }, silentLogger), input);
}
