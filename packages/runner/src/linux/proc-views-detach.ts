// Detaching the runner's lxcfs views from running environments before the daemon stops: in every other mount
// namespace still holding a bind of this lxcfs, the bind is lazily unmounted, so the environment's processes read
// the kernel's own /proc files instead of ENOTCONN. docs/design/0013-honest-proc-views.md "Stopping the runner".
import { readFile, readdir, readlink } from 'node:fs/promises';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import { exec } from './exec.js';
import { type MountInfoEntry, findMount, parseMountInfo, readMountInfo } from './idmap.js';

/** What {@link detachProcViews} did: mount namespaces that held binds of the daemon, binds unmounted, failures. */
export interface DetachedProcViews {
  namespaces: number;
  unmounted: number;
  failed: number;
}

/**
 * The mount points in `mounts` (one process's mountinfo) that belong to the FUSE connection `device` (the
 * `major:minor` of the lxcfs mount; unique per daemon, so another runner's lxcfs never matches), topmost first.
 */
export function lxcfsBindsIn(mounts: readonly MountInfoEntry[], device: string): string[] {
  return mounts
    .filter((entry) => entry.device === device && entry.fsType === 'fuse.lxcfs')
    .map((entry) => entry.mountPoint)
    .reverse();
}

/**
 * Lazily unmounts (`umount -l`) every bind of the lxcfs mounted at `root` in every mount namespace other than the
 * runner's own (the running environments': found by scanning `/proc/<pid>/ns/mnt`, one process per namespace, and
 * that process's mountinfo), so that they see the kernel's files once the daemon stops. Runs
 * `nsenter --mount=/proc/<pid>/ns/mnt --root=/ -- umount -l -c /proc/<pid>/root<mount point>`: `--root=/` keeps
 * the host's root (opened before entering), so the host's `umount` runs, never a binary of the environment's
 * file system; the path reaches the bind through the process's root, and the kernel only unmounts mounts of the
 * namespace entered. Nothing to do when nothing lxcfs is mounted at `root`.
 * @returns counts; never throws (each failure is logged as a warning and counted).
 */
export async function detachProcViews(root: string, logger: Logger = silentLogger): Promise<DetachedProcViews> {
  const done: DetachedProcViews = { namespaces: 0, unmounted: 0, failed: 0 };
  try {
    const mount = findMount(await readMountInfo(), root);
    if (mount?.fsType !== 'fuse.lxcfs') return done;
    const seen = new Set<string>();
    const own = await readlink('/proc/self/ns/mnt').catch(() => undefined);
    if (own) seen.add(own);
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const namespace = await readlink(`/proc/${entry}/ns/mnt`).catch(() => undefined);
      if (!namespace || seen.has(namespace)) continue;
      seen.add(namespace);
      const text = await readFile(`/proc/${entry}/mountinfo`, 'utf8').catch(() => undefined);
      const binds = text === undefined ? [] : lxcfsBindsIn(parseMountInfo(text), mount.device);
      if (binds.length === 0) continue;
      done.namespaces++;
      for (const point of binds) {
        const argv = ['nsenter', `--mount=/proc/${entry}/ns/mnt`, '--root=/', '--', 'umount', '-l', '-c', `/proc/${entry}/root${point}`];
        try {
          await exec(argv, { timeoutMs: 5_000, logger });
          done.unmounted++;
        } catch (error) {
          done.failed++;
          logger.warn({ pid: Number(entry), path: point, error: errorMessage(error) }, 'lxcfs view not detached');
        }
      }
    }
  } catch (error) {
    done.failed++;
    logger.warn({ root, error: errorMessage(error) }, 'lxcfs views not detached');
  }
  if (done.namespaces > 0) logger.info({ root, ...done }, 'lxcfs views detached from running environments');
  return done;
}
