// Leak check (issue 3 §8): 20 create/stop/start/delete cycles on the real host, counting mounts, cgroups,
// network namespaces, links, runc containers, environment processes, directories and slot claims before
// and after. Each cycle leaves a background process behind an exec, which stop and delete must kill.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images.
/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Environment } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fixtures } from '../../../../e2e/harness/index.js';
import { type CgroupManager, type OciRuntime, SLOT_ID_BASE, SLOT_ID_RANGE_SIZE, exec, readMountInfo, slotInfo } from '../linux/index.js';
import type { LinuxBackend } from './linux-backend.js';
import { type BackendHost, makeEnvironment, makeReconciler, next, startBackendHost } from './testing.js';

const CYCLES = 20;
/** Own slot range (see linux-backend.integration.test.ts): 9000..13000, varied by pid. */
const SLOT_OFFSET = 9000 + (process.pid % 100) * 40;
const SLOT_COUNT = 40;

/** Host objects that belong to this test's data dir and slot range. */
async function census(dataDir: string, runtime: OciRuntime, cgroups: CgroupManager) {
  const names = Array.from({ length: SLOT_COUNT }, (_, index) => slotInfo(SLOT_OFFSET + index));
  const netnsNames = new Set(names.map((info) => info.netnsName));
  const linkNames = new Set(names.map((info) => info.hostInterface));
  const mounts = (await readMountInfo()).filter(
    (entry) => entry.mountPoint.startsWith(dataDir) || [...netnsNames].some((name) => entry.mountPoint.endsWith(`/${name}`)),
  ).length;
  const netns = (await exec(['ip', '-j', 'netns', 'list'])).stdout.trim();
  const netnsCount = (netns ? (JSON.parse(netns) as Array<{ name: string }>) : []).filter((entry) => netnsNames.has(entry.name)).length;
  const links = (JSON.parse((await exec(['ip', '-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>).filter((link) =>
    linkNames.has(link.ifname),
  ).length;
  const low = SLOT_ID_BASE + SLOT_OFFSET * SLOT_ID_RANGE_SIZE;
  const high = low + SLOT_COUNT * SLOT_ID_RANGE_SIZE;
  let processes = 0;
  for (const pid of (await readdir('/proc')).filter((name) => /^\d+$/.test(name))) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1);
    // A dead container init is reparented to the host's PID 1, which reaps it in its own time; such a
    // zombie holds nothing but a pid and is not ours to reap, so it is not counted.
    const zombieOfInit = /^State:\s+Z/m.test(status) && /^PPid:\s+1$/m.test(status);
    if (uid >= low && uid < high && !zombieOfInit) processes++;
  }
  const environments = (await readdir(join(dataDir, 'environments')).catch(() => [])).length;
  const slots = (await readdir(join(dataDir, 'slots')).catch(() => [] as string[])).filter((name) => /^\d+$/.test(name)).length;
  return {
    mounts,
    netns: netnsCount,
    links,
    cgroups: (await cgroups.list()).length,
    containers: (await runtime.list()).length,
    processes,
    environments,
    slots,
  };
}

describe(`${CYCLES} create/stop/start/delete cycles`, () => {
  let host: BackendHost;
  let fixtures: Fixtures;
  let dataDir: string;
  let backend: LinuxBackend;
  let runtime: OciRuntime;
  let cgroups: CgroupManager;

  beforeAll(async () => {
    host = await startBackendHost({ name: 'cycles' });
    ({ fixtures, dataDir, runtime, cgroups } = host);
    backend = await host.createBackend({
      slotOffset: SLOT_OFFSET,
      environmentClass: async () => ({ cpuMillicores: 500, memoryBytes: 256 * 1024 * 1024, swapBytes: 0, pids: 256 }),
    });
  });

  afterAll(async () => {
    await host?.dispose();
  });

  it('leaks nothing', async () => {
    const repo = await fixtures.git.createRepo(`acme/cycles${process.pid}`, {
      '.devcontainer.json': JSON.stringify({ image: fixtures.images.busybox, postStartCommand: 'echo started >> /root/starts' }),
    });
    const reconciler = makeReconciler(backend, 1);
    const signal = new AbortController().signal;
    const before = await census(dataDir, runtime, cgroups);
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      let environment = makeEnvironment('cycle', repo.url, { className: 'small' });
      const to = async (desiredPhase: Environment['spec']['desiredPhase']) => {
        environment = await reconciler.reconcile(next(environment, desiredPhase), signal);
        return environment.status.phase;
      };
      environment = await reconciler.reconcile(environment, signal);
      expect(environment.status.phase, `cycle ${cycle}: ${environment.status.message ?? ''}`).toBe('Running');
      const session = await backend.exec(
        environment.metadata.id,
        { argv: ['sh', '-c', 'sleep 600 >/dev/null 2>&1 </dev/null &'], tty: false },
        silentLogger,
      );
      session.stdin.end();
      session.stdout.resume();
      session.stderr?.resume();
      expect(await session.exit).toBe(0);
      expect(await to('Stopped')).toBe('Stopped');
      expect(await to('Running')).toBe('Running');
      expect(await to('Deleted')).toBe('Deleted');
    }
    expect(await census(dataDir, runtime, cgroups)).toEqual(before);
    expect(before).toEqual({ mounts: 0, netns: 0, links: 0, cgroups: 0, containers: 0, processes: 0, environments: 0, slots: 0 });
  }, 600_000);
});
