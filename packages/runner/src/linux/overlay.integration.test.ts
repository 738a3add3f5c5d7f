// Idempotency and crash-recovery of the idmapped overlay rootfs and the environment namespaces.
// Needs root, cc, and a kernel with idmapped mounts (≥ 5.19 for idmapped overlay layers).
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from './exec.js';
import {
  createEnvironmentNamespaces,
  deleteEnvironmentNamespaces,
  ensureIdmapHelper,
  idmapMount,
  readMountInfo,
  unmountRecursive,
} from './idmap.js';
import { mountRootfs, unmountRootfs, type RootfsLayout } from './overlay.js';

const hostId = 2_000_000 + (process.pid % 500) * 65_536;
const idMapping = { hostId, size: 65_536 };
const name = `warren-test-ov-${process.pid}`;

describe('mountRootfs / unmountRootfs', () => {
  let dir = '';
  let helper = '';
  let layout: RootfsLayout;
  const mountsAt = async (path: string): Promise<number> => (await readMountInfo()).filter((entry) => entry.mountPoint === path).length;

  beforeAll(async () => {
    dir = await mkdtemp('/tmp/warren-overlay-');
    await chmod(dir, 0o755);
    const top = join(dir, 'layers/top');
    const base = join(dir, 'layers/base');
    await mkdir(join(top, 'etc'), { recursive: true });
    await mkdir(join(base, 'etc'), { recursive: true });
    await writeFile(join(base, 'etc/os'), 'base\n');
    await writeFile(join(base, 'etc/only-base'), 'base\n');
    await writeFile(join(top, 'etc/os'), 'top\n');
    helper = await ensureIdmapHelper(join(dir, 'bin'));
    layout = {
      lowerDirs: [top, base],
      lowerMountDir: join(dir, 'env/lower'),
      upperDir: join(dir, 'env/upper'),
      workDir: join(dir, 'env/work'),
      target: join(dir, 'env/rootfs'),
      idMapping,
    };
  });

  afterAll(async () => {
    if (dir) {
      await unmountRecursive(dir, { detach: true });
      await rm(dir, { recursive: true, force: true });
    }
    await deleteEnvironmentNamespaces({ userNamespacePath: `/run/warren/userns/${name}`, networkNamespacePath: `/run/netns/${name}` });
  });

  it('compiles the helper once into a content-addressed path', async () => {
    expect(basename(helper)).toMatch(/^warren-idmap-[0-9a-f]{12}$/);
    expect(await ensureIdmapHelper(join(dir, 'bin'))).toBe(helper);
  });

  it('recovers from a crash between the idmap mounts and the overlay mount, and from a foreign mount', async () => {
    // Simulated crash: view 0 is already idmapped, view 1 holds an unrelated tmpfs.
    await mkdir(join(layout.lowerMountDir, '0'), { recursive: true });
    await mkdir(join(layout.lowerMountDir, '1'), { recursive: true });
    await idmapMount(helper, idMapping, [{ source: layout.lowerDirs[0]!, target: join(layout.lowerMountDir, '0') }]);
    await exec(['mount', '-t', 'tmpfs', 'warren-test', join(layout.lowerMountDir, '1')]);

    await mountRootfs(layout, helper);
    await mountRootfs(layout, helper);

    expect(await mountsAt(join(layout.lowerMountDir, '0'))).toBe(1);
    expect(await mountsAt(join(layout.lowerMountDir, '1'))).toBe(1);
    expect(await mountsAt(layout.target)).toBe(1);
    // Top layer wins, lower layers show through, everything appears owned by the mapped root.
    expect(await readFile(join(layout.target, 'etc/os'), 'utf8')).toBe('top\n');
    expect(await readFile(join(layout.target, 'etc/only-base'), 'utf8')).toBe('base\n');
    expect((await stat(join(layout.target, 'etc/only-base'))).uid).toBe(hostId);
    expect((await stat(join(layout.lowerDirs[1]!, 'etc/only-base'))).uid).toBe(0);
    const upper = await stat(layout.upperDir);
    expect([upper.uid, upper.gid]).toEqual([hostId, hostId]);
    // Views are read-only.
    await expect(writeFile(join(layout.lowerMountDir, '1/etc/x'), 'x')).rejects.toThrow(/EROFS/);
  });

  it('unmounts everything and tolerates repeated unmounts', async () => {
    await unmountRootfs(layout);
    await unmountRootfs(layout);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(dir))).toEqual([]);
    expect(existsSync(layout.upperDir)).toBe(true);
  });

  it('creates, repairs and deletes environment user+network namespaces', async () => {
    const paths = { userNamespacePath: `/run/warren/userns/${name}`, networkNamespacePath: `/run/netns/${name}` };
    await createEnvironmentNamespaces(helper, idMapping, paths);
    const first = (await stat(paths.networkNamespacePath)).ino;
    await createEnvironmentNamespaces(helper, idMapping, paths); // already complete: unchanged
    expect((await stat(paths.networkNamespacePath)).ino).toBe(first);
    const uidMap = await exec(['nsenter', `--user=${paths.userNamespacePath}`, 'cat', '/proc/self/uid_map']);
    expect(uidMap.stdout.trim().split(/\s+/)).toEqual(['0', String(hostId), '65536']);
    expect((await exec(['ip', 'netns', 'list'])).stdout).toContain(name);

    // Half-made (crash after one bind mount): recreated.
    await exec(['umount', paths.networkNamespacePath]);
    await createEnvironmentNamespaces(helper, idMapping, paths);
    const types = (await readMountInfo()).filter((entry) => entry.mountPoint.endsWith(`/${name}`)).map((entry) => entry.fsType);
    expect(types).toEqual(['nsfs', 'nsfs']);

    await deleteEnvironmentNamespaces(paths);
    await deleteEnvironmentNamespaces(paths);
    expect(existsSync(paths.userNamespacePath) || existsSync(paths.networkNamespacePath)).toBe(false);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.endsWith(`/${name}`))).toEqual([]);
  });
});
