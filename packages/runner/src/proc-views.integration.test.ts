// Honest /proc views end to end (docs/design/0013-honest-proc-views.md): server + runner (its own lxcfs) + runc.
// In an environment of a 500m / 512 MiB class, /proc/meminfo, `free`, /proc/cpuinfo, `nproc`, the online CPUs and
// /proc/uptime show the environment's own figures; the runner reports HonestProcViews=True; stopping the runner
// while the environment runs detaches the views (the environment reads the kernel's /proc/meminfo, not ENOTCONN)
// and leaves no lxcfs process and no FUSE mount; a restarted runner adopts the environment with those host views.
// Needs root, runc, lxcfs, /dev/fuse and the e2e fixtures.
import { readFile, readdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { Writable } from 'node:stream';
import { getCondition } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, deleteEnvironment, startHarness, waitFor, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment } from './access/index.js';
import { CONTAINER_PREFIX } from './linux-backend/index.js';
import { CgroupManager, type OciRuntime, lxcfsPaths, readMountInfo } from './linux/index.js';
import { type RunningRunner, startRunner } from './runner.js';

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

/** Runs `args` in a container through the OCI runtime itself (no runner involved). @returns its exit code and output. */
async function runtimeExec(runtime: OciRuntime, id: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const child = await runtime.exec(id, { args });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => chunks.push(chunk));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out: Buffer.concat(chunks).toString('utf8') };
}

function hostMemTotal(meminfo: string): string | undefined {
  return /^MemTotal:\s+(\d+) kB$/m.exec(meminfo)?.[1];
}

describe('honest /proc views in an environment', () => {
  let harness: HarnessWithFixtures;
  /** Set once the test stops the harness's runner with the environment running; the next runner then deletes it. */
  let stoppedWith: string | undefined;
  let restarted: RunningRunner | undefined;

  /** A second runner on the harness's data dir, runtime and cgroup parent (a restarted runner process). */
  const restartRunner = async (): Promise<RunningRunner> =>
    (restarted = await startRunner({
      server: harness.controlPlane.url,
      token: await harness.controlPlane.runnerToken('procviews-test'),
      name: 'procviews-test',
      dataDir: harness.runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      config: { heartbeatSeconds: 1, slotOffset: SLOT_OFFSET },
      linux: {
        firewall: false,
        runtime: harness.runtime!,
        cgroups: await CgroupManager.detect({ parent: `warren-procviews-${process.pid}` }),
      },
    }));

  beforeAll(async () => {
    harness = await startHarness({ name: 'procviews', fixtures: true, config: { slotOffset: SLOT_OFFSET } });
  });

  afterAll(async () => {
    // A failure between the stop and the restart would leave the environment with no runner to delete it.
    if (stoppedWith && !restarted) await restartRunner();
    if (stoppedWith) await deleteEnvironment(harness.admin, stoppedWith);
    await restarted?.close();
    await harness?.dispose();
  });

  it('shows a 500m / 512 MiB class its own memory, CPUs and uptime, falls back to the host views on a runner stop', async () => {
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

    // A clean stop while the environment runs: lxcfs stops, and the environment's views are detached first, so it
    // reads the kernel's files (the host's MemTotal) instead of ENOTCONN.
    const { root } = lxcfsPaths(`${runnerDir}/lxcfs`);
    expect(await lxcfsProcessesServing(root)).toHaveLength(1);
    stoppedWith = created.metadata.id;
    await runner.close();
    expect(await lxcfsProcessesServing(root)).toEqual([]);
    expect((await readMountInfo()).filter((entry) => entry.fsType === 'fuse.lxcfs' && entry.mountPoint.startsWith(runnerDir))).toEqual([]);
    const runtime = harness.runtime!;
    const container = `${CONTAINER_PREFIX}${created.metadata.id}`;
    expect((await runtime.state(container))?.status).toBe('running');
    const hostTotal = hostMemTotal(await readFile('/proc/meminfo', 'utf8'));
    const meminfo = await runtimeExec(runtime, container, ['cat', '/proc/meminfo']);
    expect(meminfo.code, meminfo.out).toBe(0);
    expect(hostMemTotal(meminfo.out)).toBe(hostTotal);
    const mounts = await runtimeExec(runtime, container, ['cat', '/proc/self/mountinfo']);
    expect(mounts.out).not.toContain('fuse.lxcfs');

    // The next runner adopts the running environment (host views until its next start) and deletes it.
    const next = await restartRunner();
    await next.synced;
    await waitForPhase(admin, created.metadata.id, 'Running');
    expect(await lxcfsProcessesServing(root)).toHaveLength(1);
    chunks.length = 0;
    const adoptedCode = await execInEnvironment(await admin.createAccessGrant(created.metadata.id), ['grep', 'MemTotal', '/proc/meminfo'], {
      stdout,
      stderr,
    });
    expect(adoptedCode, Buffer.concat(chunks).toString('utf8')).toBe(0);
    expect(hostMemTotal(Buffer.concat(chunks).toString('utf8'))).toBe(hostTotal);

    await deleteEnvironment(admin, created.metadata.id);
    stoppedWith = undefined;
    await next.close();
    expect(await lxcfsProcessesServing(root)).toEqual([]);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(runnerDir))).toEqual([]);
  });
});
