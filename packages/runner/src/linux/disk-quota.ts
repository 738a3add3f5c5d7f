// Disk quotas as per-environment filesystems: a sparse ext4 image attached to a loop device and mounted where the
// environment's writable state lives (docs/design/0011-disk-quota.md). Spawns losetup, mkfs.ext4, e2fsck,
// resize2fs, mount and umount through exec().
import { mkdir, open, rename, rm, stat, statfs } from 'node:fs/promises';
import { type Logger, WarrenError, silentLogger } from '@warren/base';
import { exec } from './exec.js';
import { findMount, readMountInfo, unmount } from './idmap.js';

/** Smallest disk Warren makes, in bytes: below it the journal and metadata would take most of the space. */
export const DISK_MINIMUM_BYTES = 32 * 1024 * 1024;

/** Filesystem block size of the images (4 KiB, the same for every size, so any image can grow). */
const BLOCK_SIZE = 4096;

/** A disk image and where it is mounted. Both paths absolute. */
export interface DiskLayout {
  /** The sparse ext4 image (the loop device's backing file). */
  image: string;
  /** Its mount point. */
  mountPoint: string;
}

/** How full a disk is, from statfs(2) of its mount point. */
export interface DiskUsage {
  /** Bytes in use (files, directories, and the journal's share that ext4 counts as used). */
  usedBytes: number;
  /** Bytes the environment can fill in all: used plus available (the image size less filesystem metadata). */
  limitBytes: number;
}

/** One attached loop device, as `losetup --list --json` reports it. */
export interface LoopDevice {
  /** Device path, e.g. `/dev/loop3`. */
  name: string;
  /** Absolute path of the backing file as the kernel saw it at attach time; ` (deleted)` when it was unlinked since. */
  backFile: string;
}

/**
 * The mkfs.ext4 argv that formats `image` (a regular file) as an environment disk: 4 KiB blocks, no blocks
 * reserved for root (writes through the overlay run with the runner's credentials anyway, see 0011), lazy
 * inode table and journal initialisation and no discard (a fresh sparse file already reads as zeros, so
 * formatting allocates only a few MiB of it), root directory owned by host root.
 */
export function mkfsArgs(image: string): string[] {
  return [
    'mkfs.ext4',
    '-q',
    '-F',
    '-b',
    String(BLOCK_SIZE),
    '-m',
    '0',
    '-E',
    'lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0',
    image,
  ];
}

/**
 * The size an image gets for a quota of `diskBytes`: rounded up to whole blocks, at least {@link DISK_MINIMUM_BYTES}.
 */
export function imageSize(diskBytes: number): number {
  return Math.max(DISK_MINIMUM_BYTES, Math.ceil(diskBytes / BLOCK_SIZE) * BLOCK_SIZE);
}

/**
 * Parses `losetup --associated <file>` output (`/dev/loop0: [65024]:2146529 (/tmp/x.img)`, one line per device).
 * @returns the device paths, in output order.
 */
export function parseLosetupAssociated(stdout: string): string[] {
  const devices: string[] = [];
  for (const line of stdout.split('\n')) {
    const match = /^(\/dev\/loop\d+):/.exec(line.trim());
    if (match) devices.push(match[1]!);
  }
  return devices;
}

/** Parses `losetup --list --json --output NAME,BACK-FILE`; an empty output (no devices) is an empty list. */
export function parseLosetupList(stdout: string): LoopDevice[] {
  if (stdout.trim() === '') return [];
  const parsed = JSON.parse(stdout) as { loopdevices?: Array<{ name?: string; 'back-file'?: string | null }> };
  return (parsed.loopdevices ?? [])
    .filter((device) => typeof device.name === 'string' && typeof device['back-file'] === 'string')
    .map((device) => ({ name: device.name!, backFile: device['back-file']! }));
}

/** The backing file of a listed loop device without the ` (deleted)` suffix losetup adds to unlinked files. */
export function backingPath(device: LoopDevice): string {
  return device.backFile.replace(/ \(deleted\)$/, '');
}

/** Every attached loop device on the host. @throws {ExecError} when losetup fails. */
export async function listLoopDevices(options: { logger?: Logger } = {}): Promise<LoopDevice[]> {
  const { stdout } = await exec(['losetup', '--list', '--json', '--output', 'NAME,BACK-FILE'], { logger: options.logger });
  return parseLosetupList(stdout);
}

/** The loop devices backed by `image` (matched by device and inode, so symlinks in the path do not matter). */
export async function findLoopDevices(image: string, options: { logger?: Logger } = {}): Promise<string[]> {
  const { stdout } = await exec(['losetup', '--associated', image], { logger: options.logger });
  return parseLosetupAssociated(stdout);
}

/**
 * Detaches a loop device. A device still in use (a lazily unmounted filesystem held by a process) is marked to
 * detach itself when it is released (the kernel's autoclear), which losetup reports as success.
 * @throws {ExecError} when losetup fails.
 */
export async function detachLoopDevice(device: string, options: { logger?: Logger } = {}): Promise<void> {
  await exec(['losetup', '--detach', device], { logger: options.logger });
}

/**
 * Creates a sparse image of `sizeBytes` at `image` and formats it ({@link mkfsArgs}); atomic: it is made under
 * a temporary name and renamed into place, so an image that exists is complete.
 * @throws {ExecError} when mkfs.ext4 fails.
 */
export async function createDiskImage(image: string, sizeBytes: number, options: { logger?: Logger } = {}): Promise<void> {
  const temporary = `${image}.tmp-${process.pid}`;
  const file = await open(temporary, 'w', 0o600);
  try {
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
  try {
    await exec(mkfsArgs(temporary), { logger: options.logger });
    await rename(temporary, image);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/**
 * Attaches `layout.image` to a loop device (reusing one already backed by it) with direct IO, so the image's
 * pages are not cached a second time in the host's page cache, and mounts it at `layout.mountPoint` (made if
 * missing) with `discard`, so space the environment frees goes back to the host's filesystem. Idempotent: an
 * ext4 mount already at the mount point is left alone.
 * @returns the loop device.
 * @throws {ExecError} when losetup or mount fails.
 */
export async function mountDisk(layout: DiskLayout, options: { logger?: Logger } = {}): Promise<string> {
  const logger = options.logger ?? silentLogger;
  const existing = findMount(await readMountInfo(), layout.mountPoint);
  const attached = await findLoopDevices(layout.image, { logger });
  if (existing?.fsType === 'ext4' && attached.includes(existing.source)) return existing.source;
  const device = attached[0] ?? (await attach(layout.image, logger));
  await mkdir(layout.mountPoint, { recursive: true });
  try {
    await exec(['mount', '-t', 'ext4', '-o', 'discard', device, layout.mountPoint], { logger });
  } catch (error) {
    if (attached.length === 0) await detachLoopDevice(device, { logger }).catch(() => {});
    throw error;
  }
  logger.debug({ image: layout.image, device, mountPoint: layout.mountPoint }, 'disk mounted');
  return device;
}

async function attach(image: string, logger: Logger): Promise<string> {
  const { stdout } = await exec(['losetup', '--find', '--show', '--direct-io=on', image], { logger });
  const device = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new WarrenError('CommandFailed', 500, `losetup printed no loop device for ${image}`);
  return device;
}

/**
 * Unmounts the disk (lazily with `detach`, for a filesystem a stray process still holds) and detaches every loop
 * device backed by its image. Missing mounts and devices are fine.
 * @throws {ExecError} when umount or losetup fails.
 */
export async function unmountDisk(layout: DiskLayout, options: { detach?: boolean; logger?: Logger } = {}): Promise<void> {
  await unmount(layout.mountPoint, options);
  // A missing image has no devices by path (losetup prints nothing); orphans are swept by backing-file name.
  for (const device of await findLoopDevices(layout.image, options)) await detachLoopDevice(device, options);
}

/**
 * Grows an unmounted image to `sizeBytes` (e2fsck -f, then the file is extended and resize2fs grows the
 * filesystem offline; online growing needs CAP_SYS_RESOURCE, which a runner in a container may lack).
 * Never shrinks.
 * @returns whether it grew.
 * @throws {WarrenError} `MountBusy` when the image is attached to a loop device; {ExecError} when a tool fails.
 */
export async function growDiskImage(image: string, sizeBytes: number, options: { logger?: Logger } = {}): Promise<boolean> {
  const current = (await stat(image)).size;
  if (sizeBytes <= current) return false;
  if ((await findLoopDevices(image, options)).length > 0)
    throw new WarrenError('MountBusy', 500, `cannot grow ${image} while it is attached to a loop device`);
  // e2fsck -p exits 1 when it fixed something, which is fine before a resize (e2fsck(8) "EXIT CODE").
  await exec(['e2fsck', '-f', '-p', image], { logger: options.logger, okCodes: [0, 1] });
  const file = await open(image, 'r+');
  try {
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
  await exec(['resize2fs', image], { logger: options.logger });
  return true;
}

/** The size of an image file in bytes (its apparent size, not the blocks it occupies). */
export async function diskImageSize(image: string): Promise<number> {
  return (await stat(image)).size;
}

/** How full the filesystem mounted at `mountPoint` is (statfs(2)). */
export async function diskUsage(mountPoint: string): Promise<DiskUsage> {
  const info = await statfs(mountPoint);
  const usedBlocks = info.blocks - info.bfree;
  return { usedBytes: usedBlocks * info.bsize, limitBytes: (usedBlocks + info.bavail) * info.bsize };
}
