// Reading an image's /etc/passwd and /etc/group from the host side: the tree belongs to the image (and to root
// inside the running environment), so symlinks must never lead the runner to the host's files.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cachedUser, resolveUsersCached, userFilesSignature } from './users.js';

/** One user resolved in `rootfs` with no cache. */
const resolveUserInRootfs = async (rootfs: string, spec: string) => (await resolveUsersCached(rootfs, [spec], undefined)).users[spec];

const PASSWD = 'root:x:0:0:root:/root:/bin/bash\nvscode:x:1000:1000::/home/vscode:/bin/bash\n';
const GROUP = 'root:x:0:\nvscode:x:1000:\nsudo:x:27:vscode\n';

describe('users of a root filesystem', () => {
  let rootfs: string;
  let outside: string;

  beforeEach(async () => {
    rootfs = await mkdtemp(join(tmpdir(), 'warren-users-'));
    outside = await mkdtemp(join(tmpdir(), 'warren-users-host-'));
    // A "host" file the image must not be able to point at.
    await writeFile(join(outside, 'secret'), 'vscode:x:4242:4242::/secret:/bin/sh\n');
  });
  afterEach(async () => {
    await rm(rootfs, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('resolves a user with groups and home from regular files', async () => {
    await mkdir(join(rootfs, 'etc'));
    await writeFile(join(rootfs, 'etc', 'passwd'), PASSWD);
    await writeFile(join(rootfs, 'etc', 'group'), GROUP);
    expect(await resolveUserInRootfs(rootfs, 'vscode')).toMatchObject({ uid: 1000, gid: 1000, additionalGids: [27], home: '/home/vscode' });
  });

  it('refuses /etc/passwd that is a symlink (it would be resolved against the host root)', async () => {
    await mkdir(join(rootfs, 'etc'));
    await symlink(join(outside, 'secret'), join(rootfs, 'etc', 'passwd'));
    await writeFile(join(rootfs, 'etc', 'group'), GROUP);
    await expect(resolveUserInRootfs(rootfs, 'vscode')).rejects.toMatchObject({ reason: 'UnsupportedUserFile' });
    await expect(resolveUsersCached(rootfs, ['vscode'], undefined)).rejects.toMatchObject({ reason: 'UnsupportedUserFile' });
  });

  it('refuses an /etc that is a symlink', async () => {
    await mkdir(join(outside, 'etc'));
    await writeFile(join(outside, 'etc', 'passwd'), PASSWD);
    await symlink(join(outside, 'etc'), join(rootfs, 'etc'));
    await expect(resolveUserInRootfs(rootfs, 'vscode')).rejects.toMatchObject({ reason: 'UnsupportedUserFile' });
  });

  it('treats missing files as empty: numeric users still resolve', async () => {
    expect(await resolveUserInRootfs(rootfs, '1000:1000')).toMatchObject({ uid: 1000, gid: 1000 });
    await expect(resolveUserInRootfs(rootfs, 'vscode')).rejects.toMatchObject({ reason: 'UnknownContainerUser' });
  });

  it('does not trust a cache once /etc/passwd became a symlink', async () => {
    await mkdir(join(rootfs, 'etc'));
    await writeFile(join(rootfs, 'etc', 'passwd'), PASSWD);
    await writeFile(join(rootfs, 'etc', 'group'), GROUP);
    const { cache } = await resolveUsersCached(rootfs, ['vscode'], undefined);
    expect(await cachedUser(rootfs, 'vscode', cache)).toMatchObject({ uid: 1000 });
    await rm(join(rootfs, 'etc', 'passwd'));
    await symlink(join(outside, 'secret'), join(rootfs, 'etc', 'passwd'));
    expect(await userFilesSignature(rootfs)).toMatch(/^!\//);
    expect(await cachedUser(rootfs, 'vscode', cache)).toBeUndefined();
  });
});
