// IO limits end to end (docs/design/0012-io-limits.md): server + runner + runc on this host's real cgroups. An environment
// whose class has writeBytesPerSecond 2 MiB/s gets that throttle rule on the device holding its workspace, and a
// `dd oflag=direct` inside is accounted to its cgroup on that device (the kernel's own counters; no wall-clock
// assertion). Warren's own layer unpack and clone ran in the runner's `background` group, with runner.json's limits.
// An environment with a disk quota is throttled on its own loop device.
// Needs root, runc, a cgroup IO controller (v1 blkio throttling or v2 io) and the e2e fixtures.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, deleteEnvironment, startHarness, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment } from './access/index.js';
import { BACKGROUND_CGROUP, CgroupManager, blockDevicesOf, ioControllerAvailable } from './linux/index.js';

/** Own slot range, apart from the other suites (see their SLOT_OFFSETs). */
const SLOT_OFFSET = 15_500 + (process.pid % 40) * 4;
const NAME = 'iolimits';
const WRITE_BPS = 2 * 1024 * 1024;
const READ_IOPS = 500;
const BACKGROUND_IO = { readBytesPerSecond: 300 * 1024 * 1024, writeBytesPerSecond: 150 * 1024 * 1024 };

const cgroups = await CgroupManager.detect({});
const available = await ioControllerAvailable(cgroups.root, cgroups.version);
if (!available) console.warn(`io-limits.integration.test.ts skipped: no cgroup IO controller (${cgroups.version}) on this host`);

/** The harness's private cgroup parent (e2e/harness/harness.ts): `warren-<name>-<pid>`. */
const groupDir = (controller: string, name: string): string =>
  cgroups.version === 'v1'
    ? join(cgroups.root, controller, `warren-${NAME}-${process.pid}`, name)
    : join(cgroups.root, `warren-${NAME}-${process.pid}`, name);

/** The rules of a v1 throttle file or v2 io.max as `MAJ:MIN` -> rest of the line. */
async function rules(file: string): Promise<Map<string, string>> {
  const text = await readFile(file, 'utf8');
  return new Map(text.split('\n').flatMap((line) => (line.trim() ? [[line.split(' ')[0]!, line.slice(line.indexOf(' ') + 1)]] : [])));
}

/** Bytes written to `device` by the group (v1 blkio.throttle.io_service_bytes_recursive; v2 io.stat wbytes). */
async function bytesWritten(name: string, device: string): Promise<number> {
  if (cgroups.version === 'v1') {
    const text = await readFile(join(groupDir('blkio', name), 'blkio.throttle.io_service_bytes_recursive'), 'utf8');
    return Number(new RegExp(`^${device} Write (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  }
  const text = await readFile(join(groupDir('', name), 'io.stat'), 'utf8');
  return Number(new RegExp(`^${device} .*\\bwbytes=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

describe.runIf(available)('IO limits on real cgroups', () => {
  let harness: HarnessWithFixtures;

  beforeAll(async () => {
    harness = await startHarness({ name: NAME, fixtures: true, config: { slotOffset: SLOT_OFFSET, io: { background: BACKGROUND_IO } } });
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('throttles an environment on its device and runs unpack and clone in the background group', async () => {
    const { fixtures, admin, runnerDir } = harness;
    const [device] = (await blockDevicesOf([runnerDir])).map((entry) => `${entry.major}:${entry.minor}`);
    expect(device, 'the runner data directory must be on a block device').toBeDefined();

    await admin.createEnvironmentClass({
      metadata: { name: 'throttled' },
      spec: {
        cpuMillicores: 1000,
        memoryBytes: 512 * 1024 * 1024,
        swapBytes: 0,
        pids: 1024,
        io: { writeBytesPerSecond: WRITE_BPS, readIops: READ_IOPS },
      },
    });
    const repo = await fixtures.git.createRepo(`acme/iolimits${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const created = await admin.createEnvironment({
      metadata: { name: 'iolimits' },
      spec: { className: 'throttled', source: { git: { url: repo.url } } },
    });
    const id = created.metadata.id;
    await waitForPhase(admin, id, 'Running');

    // The configured rules, in the kernel's own files.
    if (cgroups.version === 'v1') {
      expect((await rules(join(groupDir('blkio', id), 'blkio.throttle.write_bps_device'))).get(device!)).toBe(String(WRITE_BPS));
      expect((await rules(join(groupDir('blkio', id), 'blkio.throttle.read_iops_device'))).get(device!)).toBe(String(READ_IOPS));
      expect((await rules(join(groupDir('blkio', id), 'blkio.throttle.read_bps_device'))).has(device!)).toBe(false);
    } else {
      expect((await rules(join(groupDir('', id), 'io.max'))).get(device!)).toBe(`rbps=max wbps=${WRITE_BPS} riops=${READ_IOPS} wiops=max`);
    }

    // 8 MiB of direct writes inside: the kernel accounts them to the environment's group on the throttled device.
    const before = await bytesWritten(id, device!);
    const chunks: Buffer[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (chunks.push(chunk), callback()) });
    const script = 'cd /workspaces/* && dd if=/dev/zero of=io-test bs=1M count=8 oflag=direct && rm io-test';
    const code = await execInEnvironment(await admin.createAccessGrant(id), ['sh', '-c', script], { stdout: sink, stderr: sink });
    const out = Buffer.concat(chunks).toString('utf8');
    expect(code, out).toBe(0);
    console.log(`dd under a ${WRITE_BPS} B/s write limit: ${out.trim().split('\n').at(-1)}`); // a figure, not asserted
    expect((await bytesWritten(id, device!)) - before).toBeGreaterThanOrEqual(8 * 1024 * 1024);

    // Warren's own heavy IO: the background group holds runner.json's limits, and the layer unpack and the clone
    // ran in it (its CPU time is theirs: the group has no other tasks).
    if (cgroups.version === 'v1') {
      const background = groupDir('blkio', BACKGROUND_CGROUP);
      expect((await rules(join(background, 'blkio.throttle.read_bps_device'))).get(device!)).toBe(String(BACKGROUND_IO.readBytesPerSecond));
      expect((await rules(join(background, 'blkio.throttle.write_bps_device'))).get(device!)).toBe(
        String(BACKGROUND_IO.writeBytesPerSecond),
      );
      // The CPU weight of Warren's reserve (runner.json reserved.cpuMillicores, default 250m: 250 * 1024 / 1000).
      expect((await readFile(join(groupDir('cpu', BACKGROUND_CGROUP), 'cpu.shares'), 'utf8')).trim()).toBe('256');
      const usage = Number(await readFile(join(groupDir('cpuacct', BACKGROUND_CGROUP), 'cpuacct.usage'), 'utf8'));
      expect(usage).toBeGreaterThan(0);
    } else {
      const background = groupDir('', BACKGROUND_CGROUP);
      expect((await rules(join(background, 'io.max'))).get(device!)).toBe(
        `rbps=${BACKGROUND_IO.readBytesPerSecond} wbps=${BACKGROUND_IO.writeBytesPerSecond} riops=max wiops=max`,
      );
      expect((await readFile(join(background, 'cpu.weight'), 'utf8')).trim()).toBe('25');
      expect(await readFile(join(background, 'cpu.stat'), 'utf8')).toMatch(/^usage_usec [1-9]/m);
    }

    await deleteEnvironment(admin, id);
  });

  it('throttles an environment with a disk quota on its own loop device (exactly its IO)', async () => {
    const { fixtures, admin, runnerDir } = harness;
    await admin.createEnvironmentClass({
      metadata: { name: 'throttled-disk' },
      spec: {
        cpuMillicores: 1000,
        memoryBytes: 512 * 1024 * 1024,
        swapBytes: 0,
        pids: 1024,
        diskBytes: 512 * 1024 * 1024,
        io: { writeBytesPerSecond: WRITE_BPS },
      },
    });
    const repo = await fixtures.git.createRepo(`acme/iolimits-disk${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const created = await admin.createEnvironment({
      metadata: { name: 'iolimits-disk' },
      spec: { className: 'throttled-disk', source: { git: { url: repo.url } } },
    });
    const id = created.metadata.id;
    await waitForPhase(admin, id, 'Running');
    // The workspace is on the environment's loop device (0011); its rule names that device.
    const [loop] = (await blockDevicesOf([join(runnerDir, 'environments', id, 'disk', 'workspace')])).map(
      (entry) => `${entry.major}:${entry.minor}`,
    );
    expect(loop).toMatch(/^7:\d+$/);
    if (cgroups.version === 'v1') {
      expect((await rules(join(groupDir('blkio', id), 'blkio.throttle.write_bps_device'))).get(loop!)).toBe(String(WRITE_BPS));
    } else {
      expect((await rules(join(groupDir('', id), 'io.max'))).get(loop!)).toBe(`rbps=max wbps=${WRITE_BPS} riops=max wiops=max`);
    }
    const before = await bytesWritten(id, loop!);
    const sink = new Writable({ write: (_chunk: Buffer, _encoding, callback) => callback() });
    const script = 'cd /workspaces/* && dd if=/dev/zero of=io-test bs=1M count=4 oflag=direct && rm io-test';
    expect(await execInEnvironment(await admin.createAccessGrant(id), ['sh', '-c', script], { stdout: sink, stderr: sink })).toBe(0);
    expect((await bytesWritten(id, loop!)) - before).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    await deleteEnvironment(admin, id);
  });
});
