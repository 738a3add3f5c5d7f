// Idmapped bind mounts (shared image layers appear owned by an environment's root without chowning),
// per-environment user+network namespaces, plus the mount-table helpers (mountinfo parsing, idempotent unmount) that overlay.ts builds on.
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Logger, WarrenError } from '@warren/base';
import { compileCached, locateCSource } from './c-program.js';
import { exec } from './exec.js';

/** The helper's C source could not be found or compiled (needs a C compiler: apt `gcc`/`libc6-dev`). */
export class IdmapHelperError extends WarrenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('IdmapHelperUnavailable', 500, message, options);
  }
}

/** One line of /proc/self/mountinfo (proc(5)), with octal escapes (`\040`) decoded. */
export interface MountInfoEntry {
  mountId: number;
  parentId: number;
  /** `major:minor` of the filesystem's device. */
  device: string;
  /** Path inside the filesystem that forms this mount's root. */
  root: string;
  mountPoint: string;
  /** Per-mount options, e.g. `ro`, `relatime`, `idmapped`. */
  mountOptions: string[];
  fsType: string;
  source: string;
  /** Per-superblock options, e.g. `lowerdir=...` for overlay. */
  superOptions: string;
}

function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Parses the text of a mountinfo file (proc(5) "/proc/pid/mountinfo").
 * @returns one entry per well-formed line, in file order (later entries are mounted on top).
 */
export function parseMountInfo(text: string): MountInfoEntry[] {
  const entries: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (separator < 0 || fields.length < separator + 3) continue;
    entries.push({
      mountId: Number(fields[0]),
      parentId: Number(fields[1]),
      device: fields[2] ?? '',
      root: unescapeMountField(fields[3] ?? ''),
      mountPoint: unescapeMountField(fields[4] ?? ''),
      mountOptions: (fields[5] ?? '').split(','),
      fsType: fields[separator + 1] ?? '',
      source: unescapeMountField(fields[separator + 2] ?? ''),
      superOptions: fields.slice(separator + 3).join(' '),
    });
  }
  return entries;
}

/** Reads and parses `/proc/self/mountinfo`. @returns the runner's mount table, in mount order. */
export async function readMountInfo(): Promise<MountInfoEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/**
 * The topmost mount at exactly `path` (no symlink resolution; pass canonical absolute paths).
 * @returns the entry, or `undefined` when nothing is mounted there.
 */
export function findMount(mounts: readonly MountInfoEntry[], path: string): MountInfoEntry | undefined {
  const wanted = path.length > 1 ? path.replace(/\/+$/, '') : path;
  for (let index = mounts.length - 1; index >= 0; index--) {
    const entry = mounts[index]!;
    if (entry.mountPoint === wanted) return entry;
  }
  return undefined;
}

/**
 * Unmounts every mount stacked at `path` (umount(8) through the exec seam). Not being mounted is fine,
 * so this is safe to repeat after a crash.
 * @param options.detach lazy unmount (`umount -l`, MNT_DETACH) for mounts still busy.
 * @throws {ExecError} when umount fails for a mount that exists (e.g. EBUSY without `detach`).
 */
export async function unmount(path: string, options: { detach?: boolean; logger?: Logger } = {}): Promise<void> {
  for (let attempt = 0; attempt < 16; attempt++) {
    if (!findMount(await readMountInfo(), path)) return;
    await exec(['umount', ...(options.detach ? ['-l'] : []), path], { logger: options.logger });
  }
}

/**
 * Unmounts every mount at or below `path`, deepest first (see {@link unmount}), except the mount points listed in
 * `options.except` (left mounted; e.g. an environment's disk while it is stopped).
 */
export async function unmountRecursive(
  path: string,
  options: { detach?: boolean; logger?: Logger; except?: readonly string[] } = {},
): Promise<void> {
  const prefix = path.replace(/\/+$/, '');
  const except = new Set(options.except ?? []);
  const below = (await readMountInfo())
    .map((entry) => entry.mountPoint)
    .filter((point) => (point === prefix || point.startsWith(`${prefix}/`)) && !except.has(point));
  const unique = [...new Set(below)].sort((a, b) => b.length - a.length);
  for (const point of unique) await unmount(point, options);
}

/**
 * Locates idmap-helper.c next to this module: `src/linux/` when running from sources (vitest, tsx),
 * `../../src/linux/` relative to `dist/linux/` when running compiled.
 * @param moduleDir the directory of the running module (default: this module's; a parameter for tests).
 * @throws {IdmapHelperError} when neither exists (a package shipped without `src/`).
 */
export function idmapHelperSourcePath(moduleDir: string = dirname(fileURLToPath(import.meta.url))): string {
  const { found, candidates } = locateCSource('idmap-helper.c', moduleDir);
  if (!found) throw new IdmapHelperError(`idmap-helper.c not found (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * Returns the path of the compiled idmap helper, compiling it with `cc -O2` on first use ({@link compileCached}):
 * `<cacheDir>/warren-idmap-<12 hex of the source's and flags' hash>`.
 * @param cacheDir e.g. `<dataDir>/bin`; created if missing.
 * @throws {IdmapHelperError} when the source is missing or the compiler fails (cause: the ExecError).
 */
export async function ensureIdmapHelper(cacheDir: string, options: { logger?: Logger } = {}): Promise<string> {
  const sourcePath = idmapHelperSourcePath();
  try {
    return await compileCached({
      sourcePath,
      cacheDir,
      name: 'warren-idmap',
      flags: ['-O2'],
      ...(options.logger ? { logger: options.logger } : {}),
    });
  } catch (error) {
    throw new IdmapHelperError(`compiling ${sourcePath} failed`, { cause: error });
  }
}

/** A source directory and the existing directory where its idmapped view is mounted. */
export interface IdmapPair {
  source: string;
  target: string;
}

/**
 * Makes idmapped, read-only, recursive bind mounts: for each pair, files owned by host id `n` under
 * `source` appear as host id `hostId + n` under `target` (so host root → the environment's mapped root).
 * Mechanism: open_tree(2) + mount_setattr(2) MOUNT_ATTR_IDMAP + move_mount(2) in the C helper; needs
 * Linux ≥ 5.12 and a filesystem that supports idmapped mounts (ext4, xfs, btrfs, tmpfs ≥ 6.3 ...).
 * Not idempotent by itself: callers check {@link findMount} first (see overlay.ts).
 * @param helperPath from {@link ensureIdmapHelper}.
 * @param idMapping container id 0 ↔ host id `hostId`, `size` ids (uids and gids alike).
 * @throws {ExecError} when the helper fails; its stderr names the step and errno.
 */
export async function idmapMount(
  helperPath: string,
  idMapping: { hostId: number; size: number },
  pairs: readonly IdmapPair[],
  options: { logger?: Logger } = {},
): Promise<void> {
  if (pairs.length === 0) return;
  for (const pair of pairs) {
    const info = await stat(pair.target);
    if (!info.isDirectory()) throw new IdmapHelperError(`idmap target ${pair.target} is not a directory`);
  }
  await exec(
    [helperPath, 'mount', String(idMapping.hostId), String(idMapping.size), ...pairs.flatMap((pair) => [pair.source, pair.target])],
    {
      logger: options.logger,
    },
  );
}

/** Where an environment's persistent user and network namespaces are bind-mounted (nsfs files). */
export interface EnvironmentNamespacePaths {
  /** e.g. `/run/warren/userns/warren-env-1`; its directory is created if missing. */
  userNamespacePath: string;
  /** e.g. `/run/netns/warren-env-1`, so `ip -n warren-env-1 ...` and `ip netns del` work on it. */
  networkNamespacePath: string;
}

/**
 * Creates an environment's user namespace (container id 0 ↔ host id `hostId`, `size` ids; setgroups
 * allowed) and a network namespace owned by it, and pins both by bind-mounting their nsfs files at the
 * given paths. The container then joins both by path (see `buildOciConfig` `userNamespacePath`).
 * Why not `ip netns add`: a netns owned by the initial user namespace cannot be joined by `runc exec`
 * after it has entered the container's user namespace (setns(2) EPERM), the container cannot mount
 * sysfs in it, and its network capabilities would not apply there (network_namespaces(7)).
 * Idempotent: when both paths already hold nsfs mounts nothing is done; a half-made pair is removed
 * and made again. The network itself (veth, addresses, routes) is configured with `ip -n <name>` as usual.
 * @returns true when the pair was made now (the network namespace is new and empty), false when it existed.
 * @throws {ExecError} when the helper fails.
 */
export async function createEnvironmentNamespaces(
  helperPath: string,
  idMapping: { hostId: number; size: number },
  paths: EnvironmentNamespacePaths,
  options: { logger?: Logger } = {},
): Promise<boolean> {
  const mounts = await readMountInfo();
  const user = findMount(mounts, paths.userNamespacePath);
  const network = findMount(mounts, paths.networkNamespacePath);
  if (user?.fsType === 'nsfs' && network?.fsType === 'nsfs') return false;
  await deleteEnvironmentNamespaces(paths, options);
  for (const path of [paths.userNamespacePath, paths.networkNamespacePath]) {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, '', { mode: 0o444 });
  }
  await exec(
    [helperPath, 'userns', String(idMapping.hostId), String(idMapping.size), paths.userNamespacePath, paths.networkNamespacePath],
    {
      logger: options.logger,
    },
  );
  return true;
}

/**
 * Unpins and removes an environment's namespaces (what {@link createEnvironmentNamespaces} made).
 * The kernel frees them once no process or mount uses them. Missing paths are fine (idempotent).
 * @throws {ExecError} when umount fails for an existing mount.
 */
export async function deleteEnvironmentNamespaces(paths: EnvironmentNamespacePaths, options: { logger?: Logger } = {}): Promise<void> {
  for (const path of [paths.networkNamespacePath, paths.userNamespacePath]) {
    await unmount(path, { detach: true, logger: options.logger });
    await rm(path, { force: true });
  }
}
