// An environment's disk quota: the ext4 image that holds its writable state (workspace, overlay upper and work
// dirs) when its class has `diskBytes`, made at creation, mounted while the environment exists (running or
// stopped), grown at start, removed with the environment (docs/design/0011-disk-quota.md).
import { realpath, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Environment } from '@warren/api';
import { type Logger, errorMessage } from '@warren/base';
import {
  type DiskUsage,
  backingPath,
  createDiskImage,
  detachLoopDevice,
  diskImageSize,
  diskUsage,
  growDiskImage,
  imageSize,
  listLoopDevices,
  mountDisk,
  unmountDisk,
} from '../linux/index.js';
import type { BackendContext } from './context.js';
import { type EnvironmentPaths, DISK_IMAGE_NAME, environmentPaths, exists, isEnvironmentId } from './paths.js';

/**
 * The quota of `environment`'s class in bytes; undefined without a class lookup, for an unknown class, or when
 * the class has no `diskBytes` (or 0: no quota).
 * @throws what the class lookup throws (the server unreachable: the step is retried).
 */
export async function classDiskBytes(backend: BackendContext, environment: Environment, logger: Logger): Promise<number | undefined> {
  if (!backend.options.environmentClass) return undefined;
  const spec = await backend.options.environmentClass(environment.spec.className);
  if (!spec) {
    logger.warn({ className: environment.spec.className }, 'environment class not found; no disk quota');
    return undefined;
  }
  return spec.diskBytes ? spec.diskBytes : undefined;
}

/**
 * Before the first clone: makes and mounts the environment's disk when its class has a quota and the environment
 * is new (nothing of its writable state exists yet in the plain layout), and mounts an existing disk. An
 * environment made before quotas, or while its class had none, keeps its plain directories: a disk is never
 * mounted over data.
 * @returns the environment's paths in the layout it has now.
 * @throws {ExecError} when mkfs.ext4, losetup or mount fails.
 */
export async function prepareDisk(backend: BackendContext, environment: Environment, logger: Logger): Promise<EnvironmentPaths> {
  const id = environment.metadata.id;
  const plain = environmentPaths(backend.dataDir, id);
  const onDisk = environmentPaths(backend.dataDir, id, 'disk');
  if (!(await exists(plain.diskImage))) {
    const diskBytes = await classDiskBytes(backend, environment, logger);
    if (diskBytes === undefined) return plain;
    if ((await exists(plain.workspace)) || (await exists(plain.upper))) {
      logger.warn({ diskBytes }, 'environment predates its disk quota; its state stays in plain directories without a quota');
      return plain;
    }
    await createDiskImage(plain.diskImage, imageSize(diskBytes), { logger });
    logger.info({ diskBytes, sizeBytes: imageSize(diskBytes) }, 'environment disk created');
  }
  await mountDisk({ image: onDisk.diskImage, mountPoint: onDisk.disk }, { logger });
  return onDisk;
}

/**
 * Mounts the environment's disk again when it has one and it is not mounted (after a host reboot, or a manual
 * unmount), so that what is observed is the environment's state, not the empty mount point. Cheap when mounted
 * (two stat calls).
 * @returns the environment's paths in its layout.
 * @throws {ExecError} when losetup or mount fails.
 */
export async function ensureDiskMounted(backend: BackendContext, environmentId: string, logger: Logger): Promise<EnvironmentPaths> {
  const plain = environmentPaths(backend.dataDir, environmentId);
  if (!(await exists(plain.diskImage))) return plain;
  const paths = environmentPaths(backend.dataDir, environmentId, 'disk');
  if (!(await isMountPoint(paths.disk))) {
    logger.info({ image: paths.diskImage }, 'mounting the environment disk again');
    await mountDisk({ image: paths.diskImage, mountPoint: paths.disk }, { logger });
  }
  return paths;
}

/**
 * At start (no container running): grows the disk to the class's quota when that is larger than the image (offline:
 * unmount, e2fsck, extend, resize2fs, mount); a smaller quota is logged and the disk keeps its size (ext4 cannot
 * shrink safely while in use; a new environment gets the new size). Then makes sure the disk is mounted.
 * @param unmountUsers unmounts what sits on the disk (the root filesystem overlay) before it is unmounted.
 * @returns the environment's paths in its layout.
 */
export async function prepareDiskForStart(
  backend: BackendContext,
  environment: Environment,
  unmountUsers: () => Promise<void>,
  logger: Logger,
): Promise<EnvironmentPaths> {
  const id = environment.metadata.id;
  const plain = environmentPaths(backend.dataDir, id);
  if (!(await exists(plain.diskImage))) return plain;
  const paths = environmentPaths(backend.dataDir, id, 'disk');
  const diskBytes = await classDiskBytes(backend, environment, logger);
  const current = await diskImageSize(paths.diskImage);
  if (diskBytes !== undefined && imageSize(diskBytes) > current) {
    await unmountUsers();
    await unmountDisk({ image: paths.diskImage, mountPoint: paths.disk }, { logger });
    await growDiskImage(paths.diskImage, imageSize(diskBytes), { logger });
    logger.info({ fromBytes: current, toBytes: imageSize(diskBytes) }, 'environment disk grown');
  } else if (diskBytes !== undefined && imageSize(diskBytes) < current) {
    logger.warn({ diskBytes, sizeBytes: current }, 'class disk quota is smaller than the environment disk; the disk keeps its size');
  }
  await mountDisk({ image: paths.diskImage, mountPoint: paths.disk }, { logger });
  return paths;
}

/**
 * The environment's disk usage when it has a mounted disk; undefined for environments without a quota (or while
 * the disk is not mounted).
 */
export async function observeDisk(paths: EnvironmentPaths): Promise<DiskUsage | undefined> {
  if (paths.disk === paths.dir || !(await isMountPoint(paths.disk))) return undefined;
  return diskUsage(paths.disk).catch(() => undefined);
}

/**
 * Unmounts the environment's disk (lazily: a stray process may hold it) and detaches its loop device; the image
 * goes with the environment's directory. Without a disk this does nothing.
 * @throws {ExecError} when umount or losetup fails.
 */
export async function releaseDisk(backend: BackendContext, environmentId: string, logger: Logger): Promise<void> {
  const paths = environmentPaths(backend.dataDir, environmentId, 'disk');
  await unmountDisk({ image: paths.diskImage, mountPoint: paths.disk }, { detach: true, logger });
}

/**
 * Detaches loop devices whose backing file is an environment disk of THIS data dir (`<dataDir>/environments/<id>/
 * disk.img`) and whose environment is not in `knownIds`, or whose image was deleted. Devices backed by anything
 * else (another runner's data dir, the host's own) are never touched.
 * @returns `loop:<device>` for each device detached.
 */
export async function sweepOrphanLoopDevices(backend: BackendContext, knownIds: ReadonlySet<string>, logger: Logger): Promise<string[]> {
  const removed: string[] = [];
  // The kernel keeps the canonical path of a backing file.
  const environments = await realpath(join(backend.dataDir, 'environments')).catch(() => join(backend.dataDir, 'environments'));
  let devices;
  try {
    devices = await listLoopDevices({ logger });
  } catch (error) {
    logger.warn({ error: errorMessage(error) }, 'loop devices not listed; orphaned environment disks not swept');
    return removed;
  }
  for (const device of devices) {
    const file = backingPath(device);
    const environmentDir = dirname(file);
    if (dirname(environmentDir) !== environments || !file.endsWith(`/${DISK_IMAGE_NAME}`)) continue;
    const id = environmentDir.slice(environments.length + 1);
    if (!isEnvironmentId(id)) continue;
    const deleted = file !== device.backFile;
    if (knownIds.has(id) && !deleted) continue;
    await detachLoopDevice(device.name, { logger }).then(
      () => removed.push(`loop:${device.name}`),
      (error: unknown) => logger.warn({ device: device.name, error: errorMessage(error) }, 'orphaned loop device not detached'),
    );
  }
  return removed;
}

/** Whether `path` is the root of a mount (its device differs from its parent's); false when it does not exist. */
async function isMountPoint(path: string): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([stat(path), stat(dirname(path))]);
    return self.dev !== parent.dev;
  } catch {
    return false;
  }
}

/** The environment's paths in the layout it has on this host: `disk` when it has a disk image, else `plain`. */
export async function locateEnvironment(backend: BackendContext, environmentId: string): Promise<EnvironmentPaths> {
  const plain = environmentPaths(backend.dataDir, environmentId);
  return (await exists(plain.diskImage)) ? environmentPaths(backend.dataDir, environmentId, 'disk') : plain;
}
