// The CPU burst controller on real cgroups (docs/design/0015-cpu-burst-controller.md): server + runner + runc, two
// environments of a class with a 250m request and a 2000m limit. When A burns CPU alone, the controller raises
// A's CFS quota above its request; when B burns too, it pulls A back to its share by requests. Asserts on the
// controller's decisions and the cgroup files, never on elapsed time. Needs root, runc and the e2e fixtures.
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, startHarness, waitFor, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment } from './access/index.js';
import { CONTAINER_PREFIX } from './linux-backend/index.js';
import { CgroupManager } from './linux/index.js';
import type { TimedCpuDecision } from './resources/index.js';

/** Own slot range, apart from the other suites and benches. */
const SLOT_OFFSET = 15_700 + (process.pid % 40) * 4;
const REQUEST = 250;
const LIMIT = 2000;

const sink = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });

describe('CPU burst controller on real cgroups', () => {
  let harness: HarnessWithFixtures;

  beforeAll(async () => {
    harness = await startHarness({
      name: 'cpuburst',
      fixtures: true,
      config: { slotOffset: SLOT_OFFSET, maxEnvironments: 4, cpuController: true },
    });
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('raises a busy environment when the host is idle and pulls it back when the other one burns too', async () => {
    const { fixtures, admin, runner } = harness;
    const controller = runner.cpuController;
    expect(controller, 'the Linux backend with cpuController: true runs the controller').toBeDefined();
    await admin.createEnvironmentClass({
      metadata: { name: 'bursty' },
      spec: { cpuMillicores: LIMIT, requests: { cpuMillicores: REQUEST }, memoryBytes: 512 * 1024 ** 2, swapBytes: 0, pids: 1024 },
    });
    const repo = await fixtures.git.createRepo(`acme/cpuburst${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const [a, b] = await Promise.all(
      ['burst-a', 'burst-b'].map((name) =>
        admin.createEnvironment({ metadata: { name }, spec: { className: 'bursty', source: { git: { url: repo.url } } } }),
      ),
    );
    const idA = a!.metadata.id;
    const idB = b!.metadata.id;
    await Promise.all([waitForPhase(admin, idA, 'Running'), waitForPhase(admin, idB, 'Running')]);

    // The cgroup files the controller writes (the harness's private parent, v1 or v2).
    const cgroups = await CgroupManager.detect({});
    const parent = `warren-cpuburst-${process.pid}`; // e2e/harness's cgroup parent for name 'cpuburst'
    const quotaFile = async (id: string): Promise<number> => {
      if (cgroups.version === 'v2') {
        const [quota, period] = (await readFile(join(cgroups.root, parent, id, 'cpu.max'), 'utf8')).trim().split(' ');
        return Math.round((Number(quota) * 1000) / Number(period));
      }
      const quota = Number(await readFile(join(cgroups.root, 'cpu', parent, id, 'cpu.cfs_quota_us'), 'utf8'));
      const period = Number(await readFile(join(cgroups.root, 'cpu', parent, id, 'cpu.cfs_period_us'), 'utf8'));
      return Math.round((quota * 1000) / period);
    };
    const decision = (id: string): TimedCpuDecision | undefined => controller!.latestDecisions().find((entry) => entry.name === id);
    // Two busy loops (the host has 2 CPUs here; more CPUs only make the burst larger), detached from the exec.
    const burn = async (id: string) => {
      const script = 'for i in 1 2; do setsid sh -c "while :; do :; done" </dev/null >/dev/null 2>&1 & done';
      const code = await execInEnvironment(await admin.createAccessGrant(id), ['sh', '-c', script], { stdout: sink(), stderr: sink() });
      expect(code).toBe(0);
    };

    // The interactive sub-cgroup: a process the OCI runtime starts with `subCgroup` (as terminals are) runs in
    // <environment>/interactive for the cpu controller, and in the environment's own group for the others.
    const interactive = await new CgroupManager({ version: cgroups.version, parent }).ensureInteractiveGroup(idA);
    if (cgroups.version === 'v1') {
      expect(interactive.group).toBeDefined();
      const child = await harness.runtime!.exec(`${CONTAINER_PREFIX}${idA}`, {
        args: ['cat', '/proc/self/cgroup'],
        subCgroup: { path: 'interactive', controller: 'cpu' },
      });
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.resume();
      expect(await new Promise((resolve) => child.once('close', resolve)), output).toBe(0);
      expect(output).toMatch(new RegExp(`^\\d+:cpu:/${parent}/${idA}/interactive$`, 'm'));
      expect(output).toMatch(new RegExp(`^\\d+:memory:/${parent}/${idA}$`, 'm'));
    } else {
      console.log(
        `cgroup v2 host: ${interactive.group ? 'interactive sub-group made' : `no interactive sub-group (${interactive.reason})`}`,
      );
    }

    const decisions = () => JSON.stringify(controller!.latestDecisions(), undefined, 1);
    await burn(idA);
    // A uses its guarantee and is raised above it: to the host's idle CPU, which other load on a shared test host
    // (the controller subtracts what is busy outside the environments) may keep well under the limit.
    const burst = await waitFor(
      'A bursting above its request',
      () => {
        const current = decision(idA);
        const using = current && (current.hungry || current.usageMillicores >= 0.9 * REQUEST);
        return Promise.resolve(using && current.quotaMillicores > REQUEST + 20 ? current : undefined);
      },
      { timeoutMs: 60_000 },
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; decisions: ${decisions()}`);
    });
    expect(burst.quotaMillicores).toBeLessThanOrEqual(LIMIT);
    expect(await quotaFile(idA)).toBeGreaterThan(REQUEST);

    await burn(idB);
    // Equal requests: each holds at most half of the host's CPUs (minus the reserve), never less than its request.
    const half = Math.min(LIMIT, (availableParallelism() * 1000) / 2);
    const pulledBack = await waitFor(
      'A pulled back while B burns',
      () => {
        const current = decision(idA);
        const other = decision(idB);
        return Promise.resolve(
          current &&
            other &&
            (other.hungry || other.usageMillicores > REQUEST) &&
            current.quotaMillicores <= half &&
            current.quotaMillicores < burst.quotaMillicores
            ? { a: current, b: other }
            : undefined,
        );
      },
      { timeoutMs: 60_000 },
    ).catch((error: unknown) => {
      throw new Error(`${String(error)}; decisions: ${decisions()}`);
    });
    expect(pulledBack.a.quotaMillicores).toBeLessThan(burst.quotaMillicores);
    expect(pulledBack.a.quotaMillicores).toBeGreaterThanOrEqual(REQUEST);
    expect(pulledBack.b.quotaMillicores).toBeLessThanOrEqual(half);
    const fileA = await quotaFile(idA);
    expect(fileA).toBeGreaterThanOrEqual(REQUEST);
    expect(fileA).toBeLessThanOrEqual(half);
    expect(controller!.quotaChanges()).toBeGreaterThanOrEqual(2);
  }, 300_000);
});
