/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
// Disk quotas on the real host (issue 9 item 5, docs/design/0011-disk-quota.md): an environment whose class has
// diskBytes gets ENOSPC inside when it writes past it (workspace and root filesystem alike), the host's filesystem
// holds no more than the image, another environment still writes, usage shows in status, a larger quota grows the
// disk at the next start, and delete and the orphan sweep leave no mount and no loop device behind.
// Needs root, losetup, mkfs.ext4, e2fsck, resize2fs, runc, ip, cc, git, docker-registry, skopeo and the test images.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Environment, EnvironmentClassSpec, EnvironmentStatus } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixtures, startFixtures } from '../../../../e2e/harness/index.js';
import { resolveRunnerConfig } from '../config.js';
import { EnvironmentReconciler, type StepContext } from '../environment/index.js';
import { CgroupManager, RuncRuntime, backingPath, listLoopDevices, readMountInfo, unmountDisk } from '../linux/index.js';
import { LinuxBackend } from './linux-backend.js';

const MIB = 1024 * 1024;
/** Own slot range (kernel object names are host-wide): 14962..14998, between runner.integration and the network tests. */
const SLOT_OFFSET = 14_962 + (process.pid % 9) * 4;

function collect() {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

let serial = 0;
function makeEnvironment(url: string, className: string): Environment {
  serial++;
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: {
      id: `env-disk${process.pid}x${serial}`,
      name: `disk-${serial}`,
      generation: 1,
      resourceVersion: '1',
      createdTime: new Date().toISOString(),
      labels: {},
      ownerId: 'u',
    },
    spec: { desiredPhase: 'Running', source: { git: { url } }, devcontainer: {}, className, ports: [], timeouts: { inactivitySeconds: 0 } },
    status: { phase: 'Pending', observedGeneration: 0, conditions: [], ports: [] },
  };
}

function next(environment: Environment, desiredPhase: Environment['spec']['desiredPhase']): Environment {
  return {
    ...environment,
    metadata: { ...environment.metadata, generation: environment.metadata.generation + 1 },
    spec: { ...environment.spec, desiredPhase },
  };
}

describe('disk quotas on the real host', () => {
  let fixtures: Fixtures;
  let dataDir: string;
  let backend: LinuxBackend;
  let reconciler: EnvironmentReconciler;
  let cgroups: CgroupManager;
  const runtime = new RuncRuntime({ stateRoot: `/run/warren/runc-disk-test-${process.pid}` });
  const signal = new AbortController().signal;
  const context: StepContext = { signal, logger: silentLogger, onProgress: () => {} };
  const classes = new Map<string, EnvironmentClassSpec>();
  const base = { cpuMillicores: 1000, memoryBytes: 512 * MIB, swapBytes: 0, pids: 512 };

  const run = async (id: string, command: string) => {
    const session = await backend.exec(id, { argv: ['sh', '-c', command], tty: false }, silentLogger);
    session.stdin.end();
    const stdout = collect();
    const stderr = collect();
    session.stdout.pipe(stdout.stream);
    session.stderr?.pipe(stderr.stream);
    const code = await session.exit;
    await new Promise((resolve) => setImmediate(resolve));
    return { code, stdout: stdout.text(), stderr: stderr.text() };
  };
  /** Host objects of this data dir: mounts below it and loop devices backed by a file in it. */
  const leftovers = async () => ({
    mounts: (await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(`${dataDir}/`)).map((entry) => entry.mountPoint),
    loops: (await listLoopDevices()).filter((device) => backingPath(device).startsWith(`${dataDir}/`)).map((device) => device.name),
  });

  beforeAll(async () => {
    fixtures = await startFixtures();
    dataDir = await mkdtemp(join(tmpdir(), 'warren-disk-'));
    cgroups = await CgroupManager.detect({ parent: `warren-disk-test-${process.pid}` });
    classes.set('disk64', { ...base, diskBytes: 64 * MIB });
    classes.set('disk64b', { ...base, diskBytes: 64 * MIB });
    backend = await LinuxBackend.create({
      dataDir,
      config: resolveRunnerConfig({ defaultImage: fixtures.images.busybox, stopGraceSeconds: 1, slotOffset: SLOT_OFFSET }),
      runtime,
      cgroups,
      firewall: false,
      environmentClass: async (name) => classes.get(name),
    });
    reconciler = new EnvironmentReconciler({
      backend,
      stopGraceSeconds: 1,
      writeStatus: async (environment, status) => ({ ...environment, status: structuredClone(status) }),
    });
  });

  afterAll(async () => {
    if (backend) {
      for (const id of await backend.listEnvironments()) await backend.remove(id, context).catch(() => {});
    }
    await cgroups?.removeParent().catch(() => {});
    await rm(runtime.stateRoot, { recursive: true, force: true });
    await rm(`${runtime.stateRoot}-exec`, { recursive: true, force: true });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    await fixtures?.stop();
  });

  it('gives ENOSPC past diskBytes inside that environment only, shows usage, grows and leaves nothing behind', async () => {
    const repo = await fixtures.git.createRepo(`acme/disk${process.pid}`, { 'README.md': '# disk\n' });
    let a = await reconciler.reconcile(makeEnvironment(repo.url, 'disk64'), signal);
    const b = await reconciler.reconcile(makeEnvironment(repo.url, 'disk64b'), signal);
    expect(a.status.phase).toBe('Running');
    expect(b.status.phase).toBe('Running');
    const id = a.metadata.id;
    const disk: EnvironmentStatus['disk'] = a.status.disk;
    expect(disk).toBeDefined();
    // A 64 MiB disk less its metadata (journal, inode tables).
    expect(disk!.limitBytes).toBeLessThanOrEqual(64 * MIB);
    expect(disk!.limitBytes).toBeGreaterThan(48 * MIB);

    // The workspace (bind-mounted from the disk) is limited...
    const workspace = await run(id, 'dd if=/dev/zero of=big bs=1M count=100');
    expect(workspace.code).not.toBe(0);
    expect(workspace.stderr).toContain('No space left on device');
    // ...and the root filesystem's writes (the overlay upper dir on the same disk) share the same limit.
    expect((await run(id, 'rm big && sync')).code).toBe(0);
    const rootfs = await run(id, 'dd if=/dev/zero of=/big bs=1M count=100');
    expect(rootfs.code).not.toBe(0);
    expect(rootfs.stderr).toContain('No space left on device');

    // The host holds no more than the image (sparse: only what was written, never past its size).
    const image = await stat(join(dataDir, 'environments', id, 'disk.img'));
    expect(image.size).toBe(64 * MIB);
    expect(image.blocks * 512).toBeLessThanOrEqual(64 * MIB);

    // The other environment still writes, on its own disk.
    const other = await run(b.metadata.id, 'dd if=/dev/zero of=big bs=1M count=8 && echo written');
    expect(other.code).toBe(0);
    expect(other.stdout).toContain('written');

    // A reconcile of the running environment writes its usage (now nearly all of it).
    a = await reconciler.reconcile(a, signal);
    expect(a.status.disk!.usedBytes).toBeGreaterThan(a.status.disk!.limitBytes * 0.9);

    // Stopped, the disk stays mounted and its usage stays in status; started again, the state is there.
    a = await reconciler.reconcile(next(a, 'Stopped'), signal);
    expect(a.status.phase).toBe('Stopped');
    expect((await readMountInfo()).some((entry) => entry.mountPoint === join(dataDir, 'environments', id, 'disk'))).toBe(true);
    expect(a.status.disk).toBeDefined();

    // As after a host reboot (no mount, no loop device), observing mounts the disk again: the workspace is there.
    const layout = { image: join(dataDir, 'environments', id, 'disk.img'), mountPoint: join(dataDir, 'environments', id, 'disk') };
    await unmountDisk(layout);
    expect((await readMountInfo()).some((entry) => entry.mountPoint === layout.mountPoint)).toBe(false);
    expect((await listLoopDevices()).some((device) => backingPath(device) === layout.image)).toBe(false);
    const observed = await backend.observe(id);
    expect(observed.contentReady).toBe(true);
    expect(observed.disk?.usedBytes).toBeGreaterThan(observed.disk!.limitBytes * 0.9);

    // A larger quota grows the disk at the next start (offline resize), and the space is usable.
    classes.set('disk64', { ...base, diskBytes: 128 * MIB });
    a = await reconciler.reconcile(next(a, 'Running'), signal);
    expect(a.status.phase).toBe('Running');
    expect((await run(id, 'ls /big')).code).toBe(0);
    expect(a.status.disk!.limitBytes).toBeGreaterThan(112 * MIB);
    const grown = await run(id, 'dd if=/dev/zero of=more bs=1M count=32 && echo written');
    expect(grown.stdout).toContain('written');

    // Delete leaves no mount and no loop device; the orphan sweep removes an environment the server forgot.
    a = await reconciler.reconcile(next(a, 'Deleted'), signal);
    expect(a.status.phase).toBe('Deleted');
    const removed = await backend.cleanupOrphans(new Set(), context);
    expect(removed).toContain(b.metadata.id);
    expect(await leftovers()).toEqual({ mounts: [], loops: [] });
    expect(await readdir(join(dataDir, 'environments'))).toEqual([]);
  });
});
