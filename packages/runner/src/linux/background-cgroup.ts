// Warren's own cgroup for its heavy IO (image layer unpack, git clone, later backups), with its own IO limits and the
// CPU weight of Warren's reserve, so that work cannot starve running environments (docs/design/0012-io-limits.md).
import { join } from 'node:path';
import { type Logger, errorMessage } from '@warren/base';
import { type IoLimits, SYSFS_ROOT, blockDevicesOf, deviceIoLimits } from './cgroup-io.js';
import { BACKGROUND_CGROUP, type CgroupManager } from './cgroups.js';
import type { ExecCgroup } from './exec.js';

/** Options of {@link ensureBackgroundCgroup}. */
export interface BackgroundCgroupOptions {
  /** Paths whose block devices get `io` (the runner's data directory: images and environments live there). */
  paths: readonly string[];
  /** IO limits of the group; absent or all 0 = none (the group still separates the work from the runner's own). */
  io?: IoLimits;
  /**
   * The group's CPU weight as a request in millicores (v1 `cpu.shares`, v2 `cpu.weight`): the CPU kept back for
   * Warren itself (runner.json `reserved.cpuMillicores`), so under contention the work gets that share and environments
   * the rest; no CFS limit, so it uses idle CPU freely. Absent = the kernel default (one core's worth).
   */
  cpuRequestMillicores?: number;
  logger: Logger;
  /** sysfs root (tests). */
  sysfs?: string;
}

/**
 * Makes (or updates, level-triggered) the background group with `io` on the devices holding `paths`.
 * @returns the group's `cgroup.procs` files, for the exec seam's `cgroup` option; undefined when the group
 *   cannot be made (logged: the heavy work then runs in the runner's own cgroup, unlimited, as before).
 */
export async function ensureBackgroundCgroup(cgroups: CgroupManager, options: BackgroundCgroupOptions): Promise<ExecCgroup | undefined> {
  const { logger } = options;
  try {
    const devices = await blockDevicesOf(options.paths, options.sysfs ?? SYSFS_ROOT);
    if (devices.length === 0 && options.io) {
      logger.warn({ paths: options.paths }, 'the data directory is on no block device: background IO is not limited');
    }
    const io = deviceIoLimits(devices, options.io);
    const cpu = options.cpuRequestMillicores === undefined ? {} : { cpuRequestMillicores: options.cpuRequestMillicores };
    await cgroups.create(BACKGROUND_CGROUP, { ...cpu, io });
    const procsFiles = (await cgroups.directories(BACKGROUND_CGROUP)).map((dir) => join(dir, 'cgroup.procs'));
    logger.info({ cgroup: cgroups.cgroupsPath(BACKGROUND_CGROUP), io, ...cpu }, 'background cgroup ready');
    return { procsFiles };
  } catch (error) {
    logger.warn({ error: errorMessage(error) }, 'background cgroup unavailable: image unpack and clone run unlimited');
    return undefined;
  }
}
