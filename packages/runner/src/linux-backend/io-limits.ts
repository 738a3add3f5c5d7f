// An environment's IO limits (docs/design/0012-io-limits.md): its class's `io`, or the runner's default, on the block
// devices that hold its writable state (its own loop device with a disk quota) and the image layers it reads.
import type { EnvironmentClassIo } from '@warren/api';
import { type Logger, errorMessage } from '@warren/base';
import {
  type BlockDevice,
  type DeviceIoLimits,
  blockDevicesOf,
  deviceIoLimits,
  hasIoLimit,
  ioControllerAvailable,
} from '../linux/index.js';
import type { BackendContext } from './context.js';

/**
 * The per-device IO limits of an environment whose workspace is at `workspace`: `classIo` (else runner.json
 * `io.environments`) on the devices of the workspace (the overlay upper dir is on the same filesystem) and of the data
 * directory (image layers). Devices that cannot be found are left out, with a warning; so is everything on a host
 * without an IO controller, so the environment still starts, unthrottled.
 */
export async function environmentIoLimits(
  backend: BackendContext,
  classIo: EnvironmentClassIo | undefined,
  workspace: string,
  logger: Logger,
): Promise<DeviceIoLimits[]> {
  const io = classIo ?? backend.options.config.io.environments;
  if (!hasIoLimit(io)) return [];
  if (!(await ioControllerAvailable(backend.cgroups.root, backend.cgroups.version))) {
    logger.warn({ io }, 'the host has no cgroup IO controller (blkio throttling / io): IO limits not applied');
    return [];
  }
  const devices: BlockDevice[] = [];
  for (const path of [workspace, backend.dataDir]) {
    try {
      devices.push(...(await blockDevicesOf([path])));
    } catch (error) {
      logger.warn({ path, error: errorMessage(error) }, 'cannot find the block device of a path: no IO limit on it');
    }
  }
  if (devices.length === 0) logger.warn({ workspace }, 'the environment is on no block device: IO limits not applied');
  return deviceIoLimits(devices, io);
}
