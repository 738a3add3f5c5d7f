// Resolves user specs (`vscode`, `1000`, `1000:1000`, `vscode:staff`) against a root filesystem's
// /etc/passwd and /etc/group, as the OCI runtime itself does not (it needs numeric ids).
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError } from '@warren/base';

/** A user resolved inside a container: numeric ids, supplementary groups and home directory. */
export interface ContainerUser {
  name: string;
  uid: number;
  gid: number;
  /** Supplementary groups from /etc/group (the primary group excluded). */
  additionalGids: number[];
  /** Home directory from /etc/passwd; `/` when unknown (as runc and Docker do). */
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Parses passwd(5) text; malformed lines are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').flatMap((line) => {
    const fields = line.split(':');
    if (fields.length < 7 || line.startsWith('#')) return [];
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) return [];
    return [{ name: fields[0]!, uid, gid, home: fields[5] || '/' }];
  });
}

/** Parses group(5) text; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').flatMap((line) => {
    const fields = line.split(':');
    if (fields.length < 4 || line.startsWith('#')) return [];
    const gid = Number(fields[2]);
    if (!Number.isInteger(gid)) return [];
    return [{ name: fields[0]!, gid, members: (fields[3] ?? '').split(',').filter(Boolean) }];
  });
}

/**
 * Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`) like `docker run --user` does
 * (moby `getUser`, opencontainers/runc libcontainer/user `GetExecUser`): names are looked up in the
 * given passwd/group text, numbers need no entry; the default group is the user's primary group.
 * @throws {InvalidError} reason `UnknownContainerUser` when a name is not in the files.
 */
export function resolveUser(spec: string, passwdText: string, groupText: string): ContainerUser {
  const passwd = parsePasswd(passwdText);
  const groups = parseGroup(groupText);
  const [userPart = '', groupPart] = spec.split(':', 2);
  const numeric = /^\d+$/.test(userPart);
  const entry = numeric
    ? passwd.find((candidate) => candidate.uid === Number(userPart))
    : passwd.find((candidate) => candidate.name === userPart);
  if (!entry && !numeric) {
    throw new InvalidError(
      `user "${userPart}" does not exist in the image's /etc/passwd`,
      [{ field: 'user', message: 'unknown user' }],
      'UnknownContainerUser',
    );
  }
  const uid = entry?.uid ?? Number(userPart);
  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const group = groups.find((candidate) => candidate.name === groupPart);
      if (!group)
        throw new InvalidError(
          `group "${groupPart}" does not exist in the image's /etc/group`,
          [{ field: 'user', message: 'unknown group' }],
          'UnknownContainerUser',
        );
      gid = group.gid;
    }
  }
  const name = entry?.name ?? userPart;
  const additionalGids = [
    ...new Set(groups.filter((group) => group.members.includes(name) && group.gid !== gid).map((group) => group.gid)),
  ];
  return { name, uid, gid, additionalGids, home: entry?.home ?? '/' };
}

/** Largest /etc/passwd or /etc/group read from an image, bytes; a larger one is refused. */
const MAX_USER_FILE_BYTES = 8 * 1024 * 1024;

/**
 * Opens `<rootfs>/etc/<file>` without following a symlink in `etc` or `file`: the image (or root inside the running
 * environment) controls that tree, and a symlink such as `/etc/passwd -> /etc/shadow` would otherwise be resolved
 * against the host's root by the runner, which reads as root on the host. `etc` is opened with
 * O_DIRECTORY|O_NOFOLLOW and the file through `/proc/self/fd/<etc>/` with O_NOFOLLOW (open(2): ELOOP for a
 * symlink), so a component swapped for a symlink after a check is refused too.
 * @returns the open regular file, or undefined when it (or `etc`) does not exist.
 * @throws {InvalidError} reason `UnsupportedUserFile` when either is a symlink or the file is not a regular file.
 */
async function openEtcFile(rootfs: string, file: 'passwd' | 'group'): Promise<FileHandle | undefined> {
  const refuse = (what: string) =>
    new InvalidError(
      `the image's ${what} is a symlink or not a regular file; Warren reads /etc/passwd and /etc/group only as regular files in /etc`,
      [{ field: `/etc/${file}`, message: 'not a regular file' }],
      'UnsupportedUserFile',
    );
  let etc: FileHandle;
  try {
    etc = await open(join(rootfs, 'etc'), constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw refuse('/etc');
    throw error;
  }
  try {
    const handle = await open(`/proc/self/fd/${etc.fd}/${file}`, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw refuse(`/etc/${file}`);
    }
    return handle;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw refuse(`/etc/${file}`);
    throw error;
  } finally {
    await etc.close();
  }
}

/**
 * Reads `<rootfs>/etc/<file>` safely ({@link openEtcFile}); a missing file reads as empty.
 * @throws {InvalidError} reason `UnsupportedUserFile` for a symlink, a non-regular file or one over 8 MiB.
 */
async function readEtcFile(rootfs: string, file: 'passwd' | 'group'): Promise<string> {
  const handle = await openEtcFile(rootfs, file);
  if (!handle) return '';
  try {
    if ((await handle.stat()).size > MAX_USER_FILE_BYTES) {
      throw new InvalidError(
        `the image's /etc/${file} is larger than ${MAX_USER_FILE_BYTES} bytes`,
        [{ field: `/etc/${file}`, message: 'too large' }],
        'UnsupportedUserFile',
      );
    }
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Identifies the current content of `<rootfs>/etc/passwd` and `<rootfs>/etc/group` without reading them:
 * inode, size and change time (ns) of each, `-` for a missing file, `!` for one that is not a regular file (read
 * as refused, so a cache is never trusted for it). Any edit (useradd, usermod, an editor's rename) changes it, so
 * users resolved under one signature stay valid while it is unchanged.
 * @returns e.g. `1234:812:1763780000123456789/1240:455:1763780000123456789`.
 */
export async function userFilesSignature(rootfs: string): Promise<string> {
  const one = async (file: 'passwd' | 'group') => {
    let handle: FileHandle | undefined;
    try {
      handle = await openEtcFile(rootfs, file);
      if (!handle) return '-';
      const info = await handle.stat({ bigint: true });
      return `${info.ino}:${info.size}:${info.ctimeNs}`;
    } catch {
      return '!';
    } finally {
      await handle?.close();
    }
  };
  const [passwd, group] = await Promise.all([one('passwd'), one('group')]);
  return `${passwd}/${group}`;
}

/** Users resolved in a root filesystem, valid while its {@link userFilesSignature} is `signature`. */
export interface UserCache {
  signature: string;
  /** By user spec as given (`vscode`, `1000:1000`). */
  users: Record<string, ContainerUser>;
}

/**
 * Resolves each of `specs` in `rootfs`, from `cache` when its signature is still the files' one, else from
 * `<rootfs>/etc/passwd` and `<rootfs>/etc/group` read without following symlinks ({@link openEtcFile}; missing
 * files count as empty).
 * @returns the users by spec and the cache to keep (a new one when the files changed or a spec was missing).
 * @throws {InvalidError} reason `UnknownContainerUser` (see {@link resolveUser}), or `UnsupportedUserFile` when
 *   either file is a symlink, not a regular file or over 8 MiB.
 */
export async function resolveUsersCached(
  rootfs: string,
  specs: readonly string[],
  cache: UserCache | undefined,
): Promise<{ users: Record<string, ContainerUser>; cache: UserCache }> {
  const signature = await userFilesSignature(rootfs);
  const valid = cache?.signature === signature && !signature.includes('!') ? cache : undefined;
  if (valid && specs.every((spec) => Object.hasOwn(valid.users, spec))) return { users: valid.users, cache: valid };
  const [passwd, group] = await Promise.all([readEtcFile(rootfs, 'passwd'), readEtcFile(rootfs, 'group')]);
  const entries = new Map(Object.entries(valid?.users ?? {}));
  for (const spec of specs) entries.set(spec, resolveUser(spec, passwd, group));
  // fromEntries defines own properties, so even a spec like `__proto__` is a plain key.
  const users = Object.fromEntries(entries);
  return { users, cache: { signature, users } };
}

/**
 * The user `spec` from `cache` when the rootfs's user files still have the cache's signature.
 * @returns undefined when the files changed (or are missing, e.g. the rootfs is not mounted) or `spec` was not cached.
 */
export async function cachedUser(rootfs: string, spec: string, cache: UserCache | undefined): Promise<ContainerUser | undefined> {
  if (!cache || !Object.hasOwn(cache.users, spec)) return undefined;
  const signature = await userFilesSignature(rootfs);
  return signature === cache.signature && !signature.includes('!') ? cache.users[spec] : undefined;
}
