// An environment's root filesystem: idmapped views of the shared image layers under a per-environment
// overlayfs upper dir. Every step is idempotent so a crashed reconciler can simply run it again.
import { chown, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, InvalidError, silentLogger } from '@warren/base';
import { exec } from './exec.js';
import { findMount, idmapMount, readMountInfo, unmount, unmountRecursive, type IdmapPair } from './idmap.js';

/** Input of {@link mountRootfs} / {@link unmountRootfs}. All paths absolute and canonical (no symlinks). */
export interface RootfsLayout {
  /** Shared, read-only image layer directories, top layer first (overlayfs `lowerdir` order). */
  lowerDirs: string[];
  /** Per-environment directory holding one idmapped view per lower dir (`<lowerMountDir>/0`, `/1` ...). */
  lowerMountDir: string;
  /** Per-environment overlay upper dir; created and owned by the mapped root (`idMapping.hostId`). */
  upperDir: string;
  /** Overlay work dir on the same filesystem as `upperDir`; created like it. */
  workDir: string;
  /** Mount point of the merged root filesystem (the OCI `root.path`). */
  target: string;
  /** Container id 0 ↔ host id `hostId`, `size` ids. */
  idMapping: { hostId: number; size: number };
}

/** Overlay mount data must fit in one page (mount(2)); leave room for upperdir/workdir. */
const MAX_OVERLAY_OPTIONS = 4000;

async function sameDirectory(a: string, b: string): Promise<boolean> {
  const [left, right] = await Promise.all([stat(a), stat(b)]);
  return left.dev === right.dev && left.ino === right.ino;
}

function lowerMountPoint(layout: RootfsLayout, index: number): string {
  return join(layout.lowerMountDir, String(index));
}

/**
 * Mounts an environment's root filesystem at `layout.target`:
 * 1. each lower dir gets an idmapped read-only view at `<lowerMountDir>/<i>` (skipped when a mount of
 *    the same directory is already there; a mount of another directory is replaced);
 * 2. upper/work dirs are created and chowned to `hostId:hostId` (so the root dir is root-owned inside);
 * 3. overlayfs `lowerdir=<views>,upperdir,workdir` is mounted at `target` unless an overlay is already
 *    mounted there.
 * Needs Linux ≥ 5.19 for idmapped overlay lower layers. Idempotent.
 * @param helperPath the idmap helper from `ensureIdmapHelper`.
 * @throws {InvalidError} for an empty `lowerDirs` or overlay options longer than a page.
 * @throws {ExecError} when the helper or mount(8) fails.
 */
export async function mountRootfs(layout: RootfsLayout, helperPath: string, options: { logger?: Logger } = {}): Promise<void> {
  const logger = options.logger ?? silentLogger;
  if (layout.lowerDirs.length === 0)
    throw new InvalidError('a root filesystem needs at least one lower dir', [{ field: 'lowerDirs', message: 'must not be empty' }]);
  const views = layout.lowerDirs.map((_, index) => lowerMountPoint(layout, index));
  const overlayOptions = `lowerdir=${views.join(':')},upperdir=${layout.upperDir},workdir=${layout.workDir}`;
  if (overlayOptions.length > MAX_OVERLAY_OPTIONS) {
    throw new InvalidError('overlay mount options exceed one page; use a shorter lowerMountDir', [
      { field: 'lowerMountDir', message: 'path too long for this many layers' },
    ]);
  }

  const existing = findMount(await readMountInfo(), layout.target);
  if (existing?.fsType === 'overlay') return;

  const pending: IdmapPair[] = [];
  const mounts = await readMountInfo();
  for (const [index, lowerDir] of layout.lowerDirs.entries()) {
    const view = views[index]!;
    await mkdir(view, { recursive: true });
    const mounted = findMount(mounts, view);
    if (mounted?.mountOptions.includes('idmapped') && (await sameDirectory(view, lowerDir))) continue;
    if (mounted) await unmount(view, { logger });
    pending.push({ source: lowerDir, target: view });
  }
  await idmapMount(helperPath, layout.idMapping, pending, { logger });

  const { hostId } = layout.idMapping;
  for (const dir of [layout.upperDir, layout.workDir]) {
    await mkdir(dir, { recursive: true });
    await chown(dir, hostId, hostId);
  }
  await mkdir(layout.target, { recursive: true });
  await exec(['mount', '-t', 'overlay', 'overlay', '-o', overlayOptions, layout.target], { logger });
  logger.debug({ target: layout.target, layers: layout.lowerDirs.length }, 'rootfs mounted');
}

/**
 * Unmounts what {@link mountRootfs} mounted: the overlay at `target`, then every mount below
 * `lowerMountDir` (the idmapped views, however many layers there were).
 * Leaves the upper/work dirs (the environment's disk state) in place. Missing mounts are fine.
 * @param options.detach lazy unmount for mounts still in use (e.g. a process that escaped the container).
 * @throws {ExecError} when umount fails for a mount that exists.
 */
export async function unmountRootfs(
  layout: Pick<RootfsLayout, 'lowerMountDir' | 'target'>,
  options: { detach?: boolean; logger?: Logger } = {},
): Promise<void> {
  await unmount(layout.target, options);
  await unmountRecursive(layout.lowerMountDir, options);
}
