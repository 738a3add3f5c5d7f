// Per-device IO limits of a cgroup (docs/design/0012-io-limits.md): which block device holds a path, and the
// cgroup v1 `blkio.throttle.*` / v2 `io.max` writes and OCI `linux.resources.blockIO` entries for the limits.
import { readFile, realpath, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidError, type Logger } from '@warren/base';
import { exists, readOptional } from './cgroup-fs.js';

/** IO limits in bytes per second and operations per second; absent or 0 = no limit (as v1 reads 0). */
export interface IoLimits {
  readBytesPerSecond?: number;
  writeBytesPerSecond?: number;
  readIops?: number;
  writeIops?: number;
}

/** A block device by its number (`MAJ:MIN`, as in /proc/partitions and `/sys/dev/block`). */
export interface BlockDevice {
  major: number;
  minor: number;
}

/** {@link IoLimits} on one block device. */
export interface DeviceIoLimits extends IoLimits, BlockDevice {}

const IO_FIELDS = ['readBytesPerSecond', 'writeBytesPerSecond', 'readIops', 'writeIops'] as const;
type IoField = (typeof IO_FIELDS)[number];

/** The v1 blkio file of each field (Documentation/admin-guide/cgroup-v1/blkio-controller.rst "Throttling"). */
export const V1_THROTTLE_FILES: Readonly<Record<IoField, string>> = {
  readBytesPerSecond: 'blkio.throttle.read_bps_device',
  writeBytesPerSecond: 'blkio.throttle.write_bps_device',
  readIops: 'blkio.throttle.read_iops_device',
  writeIops: 'blkio.throttle.write_iops_device',
};

/** The v2 `io.max` key of each field (Documentation/admin-guide/cgroup-v2.rst "IO Interface Files"). */
const V2_KEYS: Readonly<Record<IoField, string>> = {
  readBytesPerSecond: 'rbps',
  writeBytesPerSecond: 'wbps',
  readIops: 'riops',
  writeIops: 'wiops',
};

/** Where sysfs is mounted; tests pass a fake tree. */
export const SYSFS_ROOT = '/sys';

/** `MAJ:MIN` of a device. */
export function deviceKey(device: BlockDevice): string {
  return `${device.major}:${device.minor}`;
}

/** Whether any field of `limits` is a limit (a positive number). */
export function hasIoLimit(limits: IoLimits | undefined): boolean {
  return IO_FIELDS.some((field) => (limits?.[field] ?? 0) > 0);
}

/**
 * The same `limits` on each of `devices` (deduplicated); empty when `limits` limits nothing, so a group without
 * IO limits gets no rules at all.
 */
export function deviceIoLimits(devices: readonly BlockDevice[], limits: IoLimits | undefined): DeviceIoLimits[] {
  if (!limits || !hasIoLimit(limits)) return [];
  const unique = new Map(devices.map((device) => [deviceKey(device), device]));
  const values = Object.fromEntries(IO_FIELDS.flatMap((field) => ((limits[field] ?? 0) > 0 ? [[field, limits[field]]] : [])));
  return [...unique.values()].map((device) => ({ major: device.major, minor: device.minor, ...values }));
}

/**
 * Checks device numbers and limit values: non-negative safe integers, one entry per device.
 * @throws {InvalidError} naming each bad field (`io[i].<field>`).
 */
export function validateIoLimits(limits: readonly DeviceIoLimits[]): void {
  const causes: { field: string; message: string }[] = [];
  const seen = new Set<string>();
  limits.forEach((entry, index) => {
    for (const field of ['major', 'minor', ...IO_FIELDS] as const) {
      const value = entry[field];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
        causes.push({ field: `io[${index}].${field}`, message: 'must be an integer >= 0' });
      }
    }
    if (seen.has(deviceKey(entry))) causes.push({ field: `io[${index}]`, message: `device ${deviceKey(entry)} is listed twice` });
    seen.add(deviceKey(entry));
  });
  if (causes.length > 0) throw new InvalidError('invalid cgroup IO limits', causes);
}

/**
 * The block device that holds `path`, as cgroup IO throttling must name it: stat(2) `st_dev` gives the
 * filesystem's device; a partition is replaced by its whole disk, because the kernel refuses throttle rules on
 * partitions (blkg_conf_open_bdev returns ENODEV, block/blk-cgroup.c). A loop or device-mapper device is a whole
 * disk itself, so an environment on its own loop device is throttled on exactly that device.
 * @returns undefined when the filesystem has no block device (tmpfs, overlayfs, btrfs subvolumes: `st_dev` is an
 *   anonymous 0:N device with no `/sys/dev/block` entry).
 * @throws the stat error (e.g. ENOENT) for `path`.
 */
export async function blockDeviceOf(path: string, sysfs: string = SYSFS_ROOT): Promise<BlockDevice | undefined> {
  const { dev } = await stat(path, { bigint: true });
  // glibc gnu_dev_major / gnu_dev_minor (sys/sysmacros.h): the kernel's 32-bit dev_t split into 12 + 20 bits.
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const entry = join(sysfs, 'dev', 'block', `${major}:${minor}`);
  if (major === 0 || !(await exists(entry))) return undefined;
  if (!(await exists(join(entry, 'partition')))) return { major, minor };
  // /sys/dev/block/M:m links to .../block/<disk>/<partition>; the parent directory is the disk.
  const disk = (await readFile(join(dirname(await realpath(entry)), 'dev'), 'utf8')).trim();
  const match = /^(\d+):(\d+)$/.exec(disk);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}

/**
 * The block devices holding `paths` (deduplicated, in order); paths on filesystems without one are left out.
 * @throws the stat error for a missing path.
 */
export async function blockDevicesOf(paths: readonly string[], sysfs: string = SYSFS_ROOT): Promise<BlockDevice[]> {
  const devices = new Map<string, BlockDevice>();
  for (const path of paths) {
    const device = await blockDeviceOf(path, sysfs);
    if (device) devices.set(deviceKey(device), device);
  }
  return [...devices.values()];
}

/** One write(2) to a cgroup file: the kernel takes one device rule per write. */
export interface CgroupFileWrite {
  file: string;
  line: string;
}

/** `MAJ:MIN` keys of the rules in a v1 throttle file or v2 io.max (`254:0 2097152` / `254:0 rbps=... `). */
function devicesIn(text: string | undefined): string[] {
  return (text ?? '').split('\n').flatMap((line) => {
    const key = /^(\d+:\d+)\s/.exec(line.trim() + ' ')?.[1];
    return key ? [key] : [];
  });
}

/**
 * The writes that make a v1 blkio group hold exactly `limits` (level-triggered): `MAJ:MIN value` per limited
 * field, and `MAJ:MIN 0` (which deletes a rule) for every device a file lists that `limits` does not limit there.
 * @param current the present content of each throttle file, by file name (missing = empty).
 */
export function v1IoWrites(limits: readonly DeviceIoLimits[], current: Readonly<Record<string, string | undefined>>): CgroupFileWrite[] {
  const writes: CgroupFileWrite[] = [];
  for (const field of IO_FIELDS) {
    const file = V1_THROTTLE_FILES[field];
    const wanted = new Map(limits.flatMap((entry) => ((entry[field] ?? 0) > 0 ? [[deviceKey(entry), entry[field]!]] : [])));
    for (const key of devicesIn(current[file])) if (!wanted.has(key)) writes.push({ file, line: `${key} 0` });
    for (const [key, value] of wanted) writes.push({ file, line: `${key} ${value}` });
  }
  return writes;
}

/**
 * The `io.max` lines that make a v2 group hold exactly `limits`: `MAJ:MIN rbps=<n|max> wbps=... riops=...
 * wiops=...` per device, and all-`max` (which deletes the rule) for every device `current` lists but `limits` does not.
 * @param current the present content of `io.max` (missing = empty).
 */
export function v2IoMaxLines(limits: readonly DeviceIoLimits[], current: string | undefined): string[] {
  const line = (key: string, entry?: IoLimits): string =>
    `${key} ${IO_FIELDS.map((field) => `${V2_KEYS[field]}=${(entry?.[field] ?? 0) > 0 ? entry![field]! : 'max'}`).join(' ')}`;
  const wanted = new Set(limits.map(deviceKey));
  return [
    ...devicesIn(current).flatMap((key) => (wanted.has(key) ? [] : [line(key)])),
    ...limits.map((entry) => line(deviceKey(entry), entry)),
  ];
}

/**
 * Applies `limits` to the v1 blkio group at `dir` ({@link v1IoWrites}). Without a blkio hierarchy (`dir`'s
 * hierarchy missing) the limits cannot be applied: that is logged, not thrown, so an environment still starts.
 * @returns whether the limits are in place (true also when there are none to apply).
 * @throws the write error (e.g. ENODEV for a device the kernel does not know, ENOENT for a missing group).
 */
export async function applyV1IoLimits(dir: string, limits: readonly DeviceIoLimits[], logger: Logger): Promise<boolean> {
  if (!(await exists(dir))) {
    if (limits.length > 0) logger.warn({ dir }, 'no blkio cgroup: IO limits not applied');
    return limits.length === 0;
  }
  const current: Record<string, string | undefined> = {};
  for (const file of Object.values(V1_THROTTLE_FILES)) current[file] = await readOptional(join(dir, file));
  if (Object.values(current).every((text) => text === undefined)) {
    if (limits.length > 0)
      logger.warn({ dir }, 'the blkio controller has no throttle files (kernel without CONFIG_BLK_DEV_THROTTLING): IO limits not applied');
    return limits.length === 0;
  }
  for (const { file, line } of v1IoWrites(limits, current)) await writeFile(join(dir, file), `${line}\n`);
  return true;
}

/**
 * Applies `limits` to the v2 group at `dir` ({@link v2IoMaxLines}). Without `io.max` (the io controller is not
 * enabled for the group) that is logged, not thrown.
 * @returns whether the limits are in place (true also when there are none to apply).
 * @throws the write error.
 */
export async function applyV2IoLimits(dir: string, limits: readonly DeviceIoLimits[], logger: Logger): Promise<boolean> {
  const current = await readOptional(join(dir, 'io.max'));
  if (current === undefined) {
    if (limits.length > 0) logger.warn({ dir }, 'no io controller in the cgroup (io.max missing): IO limits not applied');
    return limits.length === 0;
  }
  for (const line of v2IoMaxLines(limits, current)) await writeFile(join(dir, 'io.max'), `${line}\n`);
  return true;
}

/** One OCI `linux.resources.blockIO` throttle entry (runtime-spec config-linux.md "Block IO"). */
export interface OciThrottleDevice {
  major: number;
  minor: number;
  rate: number;
}

/** The throttle part of OCI `linux.resources.blockIO`. */
export interface OciBlockIo {
  throttleReadBpsDevice?: OciThrottleDevice[];
  throttleWriteBpsDevice?: OciThrottleDevice[];
  throttleReadIOPSDevice?: OciThrottleDevice[];
  throttleWriteIOPSDevice?: OciThrottleDevice[];
}

const OCI_KEYS: Readonly<Record<IoField, keyof OciBlockIo>> = {
  readBytesPerSecond: 'throttleReadBpsDevice',
  writeBytesPerSecond: 'throttleWriteBpsDevice',
  readIops: 'throttleReadIOPSDevice',
  writeIops: 'throttleWriteIOPSDevice',
};

/** `limits` as OCI `blockIO` throttle lists (only limited fields); undefined when nothing is limited. */
export function ociBlockIo(limits: readonly DeviceIoLimits[]): OciBlockIo | undefined {
  const blockIO: OciBlockIo = {};
  for (const field of IO_FIELDS) {
    const entries = limits.flatMap((entry) =>
      (entry[field] ?? 0) > 0 ? [{ major: entry.major, minor: entry.minor, rate: entry[field]! }] : [],
    );
    if (entries.length > 0) blockIO[OCI_KEYS[field]] = entries;
  }
  return Object.keys(blockIO).length > 0 ? blockIO : undefined;
}

/**
 * Whether the host can throttle IO in cgroups: v1 `blkio.throttle.*` files at the blkio hierarchy's root, v2 `io`
 * among the root's `cgroup.controllers`.
 */
export async function ioControllerAvailable(root: string, version: 'v1' | 'v2'): Promise<boolean> {
  if (version === 'v1') return exists(join(root, 'blkio', V1_THROTTLE_FILES.writeBytesPerSecond));
  return (await readOptional(join(root, 'cgroup.controllers')))?.split(/\s+/).includes('io') ?? false;
}
