// Honest /proc views end to end (docs/design/0013-honest-proc-views.md): server + runner (its own lxcfs) + runc.
// In an environment of a 500m / 512 MiB class, /proc/meminfo, `free`, /proc/cpuinfo, `nproc`, the online CPUs and
// /proc/uptime show the environment's own figures; the runner reports HonestProcViews=True; stopping the runner
// leaves no lxcfs process and no FUSE mount. Needs root, runc, lxcfs, /dev/fuse and the e2e fixtures.
import { readFile, readdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { Writable } from 'node:stream';
import { getCondition } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, deleteEnvironment, startHarness, waitFor, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment } from './access/index.js';
import { lxcfsPaths, readMountInfo } from './linux/index.js';

/** Own slot range, apart from the other suites (see their SLOT_OFFSETs). */
const SLOT_OFFSET = 16_300 + (process.pid % 50);
const MEMORY_BYTES = 512 * 1024 * 1024;

async function lxcfsProcessesServing(root: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (/(^|\/)lxcfs$/.test(argv[0] ?? '') && argv.includes(root)) found.push(Number(entry));
  }
  return found;
}

describe('honest /proc views in an environment', () => {
  let harness: HarnessWithFixtures;

  beforeAll(async () => {
    harness = await startHarness({ name: 'procviews', fixtures: true, config: { slotOffset: SLOT_OFFSET } });
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('shows a 500m / 512 MiB class its own memory, CPUs and uptime, then leaves no lxcfs behind', async () => {
    const { fixtures, admin, runner, runnerDir } = harness;
    const runnerObject = await waitFor('the HonestProcViews condition', async () => {
      const current = await admin.get('Runner', runner.runnerId);
      return getCondition(current.status.conditions, 'HonestProcViews') ? current : undefined;
    });
    expect(getCondition(runnerObject.status.conditions, 'HonestProcViews')).toMatchObject({ status: 'True', reason: 'LxcfsRunning' });

    await admin.createEnvironmentClass({
      metadata: { name: 'half' },
      spec: { cpuMillicores: 500, memoryBytes: MEMORY_BYTES, swapBytes: 0, pids: 1024 },
    });
    const repo = await fixtures.git.createRepo(`acme/procviews${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const created = await admin.createEnvironment({
      metadata: { name: 'procviews' },
      spec: { className: 'half', source: { git: { url: repo.url } } },
    });
    await waitForPhase(admin, created.metadata.id, 'Running');

    const chunks: Buffer[] = [];
    const stdout = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (chunks.push(chunk), callback()) });
    const stderr = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (chunks.push(chunk), callback()) });
    const script = [
      'grep MemTotal /proc/meminfo',
      'free -b | grep ^Mem:',
      'echo "processors $(grep -c ^processor /proc/cpuinfo)"',
      'echo "nproc $(nproc)"',
      'echo "online $(cat /sys/devices/system/cpu/online)"',
      'echo "cpulines $(grep -c "^cpu[0-9]" /proc/stat)"',
      'echo "uptime $(cut -d" " -f1 /proc/uptime)"',
    ].join('; ');
    const code = await execInEnvironment(await admin.createAccessGrant(created.metadata.id), ['sh', '-c', script], { stdout, stderr });
    const out = Buffer.concat(chunks).toString('utf8');
    expect(code, out).toBe(0);
    const field = (name: string) => new RegExp(`^${name}\\s+(\\S+)`, 'm').exec(out)?.[1];

    expect(out).toMatch(/^MemTotal:\s+524288 kB$/m);
    expect(Number(/^Mem:\s+(\d+)/m.exec(out)?.[1])).toBe(MEMORY_BYTES);
    // 500m = ceil(0.5) = one CPU: the cpuset (nproc), lxcfs's cpuinfo, online list and /proc/stat agree.
    const expectedCpus = Math.min(1, cpus().length);
    expect(Number(field('processors'))).toBe(expectedCpus);
    expect(Number(field('nproc'))).toBe(expectedCpus);
    expect(Number(field('cpulines'))).toBe(expectedCpus);
    expect(field('online')).toMatch(/^\d+$/);
    // The environment's uptime counts from its init's start, not the host's boot.
    const hostUptime = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
    expect(Number(field('uptime'))).toBeLessThan(hostUptime);

    await deleteEnvironment(admin, created.metadata.id);
    const { root } = lxcfsPaths(`${runnerDir}/lxcfs`);
    expect(await lxcfsProcessesServing(root)).toHaveLength(1);
    await runner.close();
    expect(await lxcfsProcessesServing(root)).toEqual([]);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(runnerDir))).toEqual([]);
  });
});
