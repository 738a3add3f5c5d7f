import { mkdir, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@warren/base';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureBackgroundCgroup } from './background-cgroup.js';
import { BACKGROUND_CGROUP } from './cgroups.js';
import { V1_THROTTLE_FILES } from './cgroup-io.js';
import { CgroupManager } from './cgroups.js';

// A fake v1 cgroupfs (plain directories; see cgroups.test.ts) and no sysfs entry for the temp dir's device, so the
// IO part is exercised in cgroup-io.test.ts and here only the group, its CPU weight and its procs files are.
let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-cgroupfs-'));
  for (const controller of ['cpu', 'memory', 'pids', 'blkio']) {
    await mkdir(join(root, controller));
    await writeFile(join(root, controller, 'cgroup.procs'), '');
  }
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ensureBackgroundCgroup', () => {
  it('makes <parent>/background with the reserve as CPU weight and returns its cgroup.procs files', async () => {
    const cgroups = await CgroupManager.detect({ root, parent: 'warren-test' });
    await mkdir(join(root, 'blkio', 'warren-test', BACKGROUND_CGROUP), { recursive: true });
    for (const file of Object.values(V1_THROTTLE_FILES)) await writeFile(join(root, 'blkio', 'warren-test', BACKGROUND_CGROUP, file), '');
    const joined = await ensureBackgroundCgroup(cgroups, {
      paths: [root],
      io: { writeBytesPerSecond: 1024 },
      cpuRequestMillicores: 250,
      logger: silentLogger,
      sysfs: join(root, 'no-sysfs'),
    });
    expect(joined?.procsFiles).toEqual(
      ['cpu', 'memory', 'pids', 'blkio'].map((controller) => join(root, controller, 'warren-test', BACKGROUND_CGROUP, 'cgroup.procs')),
    );
    expect((await readFile(join(root, 'cpu', 'warren-test', BACKGROUND_CGROUP, 'cpu.shares'), 'utf8')).trim()).toBe('256');
    // Not an environment's group: list() (adoption, orphan removal) leaves it out; removeParent() takes it along.
    await mkdir(join(root, 'cpu', 'warren-test', 'env-1'));
    expect(await cgroups.list()).toEqual(['env-1']);
    await rm(join(root, 'cpu', 'warren-test', 'env-1'), { recursive: true });
    for (const controller of ['cpu', 'memory', 'pids', 'blkio']) {
      const dir = join(root, controller, 'warren-test', BACKGROUND_CGROUP);
      for (const file of await readdir(dir)) await unlink(join(dir, file)); // cgroupfs control files go with rmdir
    }
    expect(await cgroups.removeParent()).toBe(true);
    expect(await readdir(join(root, 'cpu'))).toEqual(['cgroup.procs']);
  });

  it('returns undefined (logged) when the group cannot be made', async () => {
    const cgroups = await CgroupManager.detect({ root, parent: 'warren-test' });
    await writeFile(join(root, 'cpu', 'warren-test'), 'not a directory');
    expect(await ensureBackgroundCgroup(cgroups, { paths: [root], logger: silentLogger })).toBeUndefined();
  });
});
