// Requests and limits end to end (docs/design/0010-requests-and-limits.md): server + runner + runc on this host's
// real cgroups. The runner reports allocatable = capacity - reserved and its overbooking ratios; eight environments
// of the built-in `default` class (limits 2000m / 4 GiB, requests 250m / 1 GiB) are all scheduled and Running at
// once on a host of any size that holds eight 1 GiB requests; each one's cgroup carries its requests as weights
// and protection (v1 cpu.shares / memory.soft_limit_in_bytes, v2 cpu.weight / memory.low) and its memory limit.
// Needs root, runc and the e2e fixtures.
import { readFile } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { type Environment, getCondition } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, startHarness, waitFor, waitForPhase } from '../../../e2e/harness/index.js';
import { CgroupManager } from './linux/index.js';

/** Own slot range, apart from the other suites (see their SLOT_OFFSETs): 10 slots in [15_400, 15_500). */
const SLOT_OFFSET = 15_400 + (process.pid % 9) * 10;
const NAME = 'requests';
const COUNT = 8;
const GiB = 1024 ** 3;

const cgroups = await CgroupManager.detect({});
/** The harness's private cgroup parent (e2e/harness/harness.ts): `warren-<name>-<pid>`. */
const groupFile = (controller: string, id: string, file: string): string =>
  cgroups.version === 'v1'
    ? join(cgroups.root, controller, `warren-${NAME}-${process.pid}`, id, file)
    : join(cgroups.root, `warren-${NAME}-${process.pid}`, id, file);
const readNumber = async (path: string): Promise<number> => Number((await readFile(path, 'utf8')).trim());

// Eight 1 GiB memory requests plus the runner's 1 GiB reservation must fit in RAM (memory is not overbooked).
const enoughMemory = totalmem() >= (COUNT + 1) * GiB;
if (!enoughMemory) console.warn(`requests.integration.test.ts skipped: ${COUNT} default environments need ${COUNT + 1} GiB of RAM`);

describe.runIf(enoughMemory)('requests and limits on real cgroups', () => {
  let harness: HarnessWithFixtures;

  beforeAll(async () => {
    harness = await startHarness({ name: NAME, fixtures: true, config: { slotOffset: SLOT_OFFSET, maxEnvironments: 10 } });
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('runs eight default environments at once, each cgroup weighted and protected by its requests', async () => {
    const { fixtures, admin, runner } = harness;
    const runnerObject = await waitFor('the runner heartbeat with allocatable', async () => {
      const current = await admin.get('Runner', runner.runnerId);
      return current.status.allocatable ? current : undefined;
    });
    const { capacity, allocatable, overbooking } = runnerObject.status;
    expect(allocatable).toEqual({
      cpuMillicores: Math.max(0, capacity!.cpuMillicores - 250),
      memoryBytes: capacity!.memoryBytes - GiB,
      environments: 10,
    });
    expect(overbooking).toEqual({ cpu: 4, memory: 1 });

    const repo = await fixtures.git.createRepo(`acme/requests${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const created: Environment[] = [];
    for (let index = 0; index < COUNT; index++) {
      created.push(
        await admin.createEnvironment({ metadata: { name: `requests-${index}` }, spec: { source: { git: { url: repo.url } } } }),
      );
    }
    const running = await Promise.all(created.map((environment) => waitForPhase(admin, environment.metadata.id, 'Running', 300_000)));
    for (const environment of running) {
      expect(environment.spec.className).toBe('default');
      expect(getCondition(environment.status.conditions, 'Scheduled')?.status).toBe('True');
      expect(environment.status.runnerId).toBe(runner.runnerId);
    }

    for (const environment of running) {
      const id = environment.metadata.id;
      if (cgroups.version === 'v1') {
        expect(await readNumber(groupFile('cpu', id, 'cpu.shares'))).toBe(256);
        expect(await readNumber(groupFile('memory', id, 'memory.soft_limit_in_bytes'))).toBe(GiB);
        expect(await readNumber(groupFile('memory', id, 'memory.limit_in_bytes'))).toBe(4 * GiB);
      } else {
        expect(await readNumber(groupFile('', id, 'cpu.weight'))).toBe(25);
        expect(await readNumber(groupFile('', id, 'memory.low'))).toBe(GiB);
        expect(await readNumber(groupFile('', id, 'memory.max'))).toBe(4 * GiB);
      }
    }
  });
});
