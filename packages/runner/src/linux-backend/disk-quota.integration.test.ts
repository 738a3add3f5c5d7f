/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
// Disk quotas on the real host (issue 9 item 5, docs/design/0011-disk-quota.md): an environment whose class has
// diskBytes gets ENOSPC inside when it writes past it (workspace and root filesystem alike), the host's filesystem
// holds no more than the image, another environment still writes, usage shows in status, a larger quota grows the
// disk at the next start, and delete and the orphan sweep leave no mount and no loop device behind.
// Needs root, losetup, mkfs.ext4, e2fsck, resize2fs, runc, ip, cc, git, docker-registry, skopeo and the test images.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EnvironmentClassSpec, EnvironmentStatus } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fixtures } from '../../../../e2e/harness/index.js';
import type { EnvironmentReconciler, StepContext } from '../environment/index.js';
import { backingPath, listLoopDevices, readMountInfo, unmountDisk } from '../linux/index.js';
import type { LinuxBackend } from './linux-backend.js';
import { type BackendHost, execOutput, makeEnvironment, makeReconciler, next, startBackendHost } from './testing.js';

const MIB = 1024 * 1024;
/** Own slot range (kernel object names are host-wide): 14962..14998, between runner.integration and the network tests. */
const SLOT_OFFSET = 14_962 + (process.pid % 9) * 4;

describe('disk quotas on the real host', () => {
  let host: BackendHost;
  let fixtures: Fixtures;
  let dataDir: string;
  let backend: LinuxBackend;
  let reconciler: EnvironmentReconciler;
  const signal = new AbortController().signal;
  const context: StepContext = { signal, logger: silentLogger, onProgress: () => {} };
  const classes = new Map<string, EnvironmentClassSpec>();
  const base = { cpuMillicores: 1000, memoryBytes: 512 * MIB, swapBytes: 0, pids: 512 };

  const run = (id: string, command: string) => execOutput(backend, id, ['sh', '-c', command]);
  /** Host objects of this data dir: mounts below it and loop devices backed by a file in it. */
  const leftovers = async () => ({
    mounts: (await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(`${dataDir}/`)).map((entry) => entry.mountPoint),
    loops: (await listLoopDevices()).filter((device) => backingPath(device).startsWith(`${dataDir}/`)).map((device) => device.name),
  });

  beforeAll(async () => {
    host = await startBackendHost({ name: 'disk' });
    ({ fixtures, dataDir } = host);
    classes.set('disk64', { ...base, diskBytes: 64 * MIB });
    classes.set('disk64b', { ...base, diskBytes: 64 * MIB });
    backend = await host.createBackend({
      stopGraceSeconds: 1,
      slotOffset: SLOT_OFFSET,
      environmentClass: async (name) => classes.get(name),
    });
    reconciler = makeReconciler(backend, 1);
  });

  afterAll(async () => {
    await host?.dispose();
  });

  it('gives ENOSPC past diskBytes inside that environment only, shows usage, grows and leaves nothing behind', async () => {
    const repo = await fixtures.git.createRepo(`acme/disk${process.pid}`, { 'README.md': '# disk\n' });
    let a = await reconciler.reconcile(makeEnvironment('disk', repo.url, { className: 'disk64' }), signal);
    const b = await reconciler.reconcile(makeEnvironment('disk', repo.url, { className: 'disk64b' }), signal);
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
