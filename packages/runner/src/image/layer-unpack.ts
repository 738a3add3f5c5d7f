// Unpacks one layer tar (gzip, zstd or plain) into a directory with GNU tar, keeping the image's
// numeric owners, modes and xattrs, and converts OCI whiteouts into overlayfs whiteouts so that layer
// directories can be stacked as overlay lower dirs (OCI image spec layer.md "Whiteouts";
// kernel Documentation/filesystems/overlayfs.rst "whiteouts and opaque directories").
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, open, rm } from 'node:fs/promises';
import { posix } from 'node:path';
import { PassThrough, type Readable, Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { type Logger, silentLogger } from '@warren/base';
import tarStream from 'tar-stream';
import { type ExecCgroup, ExecError, spawnLogged } from '../linux/index.js';

/** Compression of a layer blob, detected from its first bytes (RFC 1952 gzip, RFC 8878 zstd magic). */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** What {@link unpackLayer} found: the uncompressed digest and size, and the whiteouts it converted. */
export interface UnpackedLayer {
  /** `sha256:` of the uncompressed tar: the layer's DiffID (OCI image spec config.md `rootfs.diff_ids`). */
  diffId: string;
  /** Size of the uncompressed tar in bytes. */
  tarBytes: number;
  /** Paths (relative, no leading slash) that became overlay whiteouts. */
  whiteouts: string[];
  /** Directories (relative) marked opaque with `trusted.overlay.opaque=y`. */
  opaqueDirectories: string[];
}

/** GNU tar options shared by layer and fix-up extraction: keep numeric owners, modes and file capabilities. */
const TAR_EXTRACT = ['--numeric-owner', '--same-owner', '--same-permissions', '--warning=no-unknown-keyword'];

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

/**
 * Detects a blob's compression from its magic bytes rather than its media type, because registries and
 * `docker save` archives mislabel layers. gzip: `1f 8b`; zstd frame: `28 b5 2f fd`.
 */
export async function detectCompression(path: string): Promise<LayerCompression> {
  const handle = await open(path, 'r');
  try {
    const magic = Buffer.alloc(4);
    const { bytesRead } = await handle.read(magic, 0, 4, 0);
    if (bytesRead >= 2 && magic[0] === 0x1f && magic[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && magic.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    await handle.close();
  }
}

/**
 * Unpacks the layer blob at `blobPath` into the existing, empty directory `target`, then converts
 * whiteouts: `.wh.<name>` becomes a character device 0:0 named `<name>`, `.wh..wh..opq` becomes the
 * `trusted.overlay.opaque=y` xattr on its directory. A whiteout whose target exists in the same layer
 * is dropped (layer.md: whiteouts only apply to lower layers). Other `.wh..wh.` entries (AUFS
 * metadata) are removed. trusted.* and security.selinux xattrs in the layer are not restored, so an
 * image cannot forge overlay metadata.
 * gzip is decompressed with zlib in Node, zstd with `zstd -dc`, both through the exec seam; tar and zstd run in
 * `options.cgroup` when given (Warren's background group, docs/design/0012-io-limits.md).
 * Must run as root (ownership, device nodes, trusted xattrs).
 * @returns the layer's DiffID, uncompressed size and converted whiteouts.
 * @throws {ExecError} when tar or zstd fail (corrupt data, disk full); the abort reason when `signal` fires.
 */
export async function unpackLayer(
  blobPath: string,
  target: string,
  options: { logger?: Logger; signal?: AbortSignal; cgroup?: ExecCgroup } = {},
): Promise<UnpackedLayer> {
  const logger = options.logger ?? silentLogger;
  const compression = await detectCompression(blobPath);
  const hash = createHash('sha256');
  let tarBytes = 0;
  const markers: string[] = [];

  const children: Promise<void>[] = [];
  const processes: ChildProcess[] = [];
  let source: Readable;
  if (compression === 'zstd') {
    const argv = ['zstd', '-dc', '-q', '--', blobPath];
    const child = spawnLogged(argv, { stdio: ['ignore', 'pipe', 'pipe'], logger, signal: options.signal, cgroup: options.cgroup });
    processes.push(child);
    children.push(waitChild(argv, child, options.signal));
    source = child.stdout!;
  } else if (compression === 'gzip') {
    source = createReadStream(blobPath).pipe(createGunzip());
  } else {
    source = createReadStream(blobPath);
  }

  const tarArgv = [
    'tar',
    '-x',
    '-f',
    '-',
    '-C',
    target,
    ...TAR_EXTRACT,
    '--xattrs',
    '--xattrs-include=*',
    '--xattrs-exclude=trusted.*',
    '--xattrs-exclude=security.selinux',
  ];
  const tar = spawnLogged(tarArgv, { stdio: ['pipe', 'ignore', 'pipe'], logger, signal: options.signal, cgroup: options.cgroup });
  processes.push(tar);
  children.push(waitChild(tarArgv, tar, options.signal));

  // The same bytes go to tar and to a header parser that records whiteout markers and hashes the DiffID.
  const tee = new PassThrough();
  const parser = tarStream.extract();
  parser.on('entry', (header, stream, next) => {
    const name = normalizeEntry(header.name);
    if (name !== undefined && posix.basename(name).startsWith(WHITEOUT_PREFIX)) markers.push(name);
    stream.on('end', next);
    stream.resume();
  });
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('finish', resolve);
    parser.on('error', reject);
  });
  const streamed = new Promise<void>((resolve, reject) => {
    source.on('error', reject);
    tee.on('error', reject);
    tee.on('end', resolve);
  });
  tar.stdin!.on('error', () => {}); // tar exiting early is reported by its exit code
  source.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    tarBytes += chunk.length;
  });
  source.pipe(tee);
  tee.pipe(tar.stdin!);
  tee.pipe(parser as unknown as Writable);

  try {
    await Promise.all([streamed, parsed, ...children]);
  } catch (error) {
    source.destroy();
    for (const child of processes) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (options.signal?.aborted) throw options.signal.reason;
    throw error;
  }

  const converted = await convertWhiteouts(target, markers, logger, options.signal);
  return { diffId: `sha256:${hash.digest('hex')}`, tarBytes, ...converted };
}

/** Strips `./` and `/` prefixes and trailing slashes; undefined for paths escaping the root. */
function normalizeEntry(name: string): string | undefined {
  const normalized = posix.normalize(`/${name}`).replace(/\/+$/, '');
  if (normalized === '' || normalized.split('/').includes('..')) return undefined;
  return normalized.slice(1);
}

/**
 * Turns the recorded `.wh.*` files in `root` into overlayfs whiteouts with one fix-up tar run: each
 * affected directory is re-emitted with its own mode, owner and mtime (plus the opaque xattr), and each
 * whiteout as a character device 0:0, owner 0:0, mode 0 — what overlayfs itself creates.
 */
async function convertWhiteouts(
  root: string,
  markers: string[],
  logger: Logger,
  signal: AbortSignal | undefined,
): Promise<{ whiteouts: string[]; opaqueDirectories: string[] }> {
  if (markers.length === 0) return { whiteouts: [], opaqueDirectories: [] };
  const opaque = new Set<string>();
  const whiteouts: string[] = [];
  const directories = new Map<string, { mode: number; uid: number; gid: number; mtime: Date }>();
  const safe: string[] = [];
  for (const marker of markers) {
    // Never act through a symlink the layer planted (tar itself refuses to extract through one).
    if (!(await isRealDirectoryPath(root, posix.dirname(marker)))) {
      logger.warn({ path: marker }, 'whiteout ignored: its directory is not a real directory in the layer');
      continue;
    }
    safe.push(marker);
  }
  for (const marker of safe) {
    const directory = posix.dirname(marker);
    if (!directories.has(directory)) {
      const stat = await lstat(posix.join(root, directory));
      directories.set(directory, { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, mtime: stat.mtime });
    }
  }
  for (const marker of safe) {
    const directory = posix.dirname(marker);
    const base = posix.basename(marker);
    await rm(posix.join(root, marker), { force: true, recursive: true });
    if (base === OPAQUE_MARKER) {
      opaque.add(directory);
    } else if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
      logger.debug({ path: marker }, 'dropped AUFS metadata entry');
    } else {
      const name = base.slice(WHITEOUT_PREFIX.length);
      const hidden = directory === '.' ? name : `${directory}/${name}`;
      const exists = await lstat(posix.join(root, hidden)).then(
        () => true,
        () => false,
      );
      if (exists) logger.debug({ path: hidden }, 'whiteout ignored: target is in the same layer');
      else whiteouts.push(hidden);
    }
  }
  const pack = tarStream.pack();
  for (const [directory, stat] of directories) {
    pack.entry({
      name: directory === '.' ? './' : `${directory}/`,
      type: 'directory',
      mode: stat.mode,
      uid: stat.uid,
      gid: stat.gid,
      mtime: stat.mtime,
      ...(opaque.has(directory) ? { pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } } : {}),
    });
  }
  for (const path of whiteouts) {
    pack.entry({ name: path, type: 'character-device', devmajor: 0, devminor: 0, mode: 0, uid: 0, gid: 0, mtime: new Date(0) });
  }
  pack.finalize();
  const argv = ['tar', '-x', '-f', '-', '-C', root, ...TAR_EXTRACT, '--xattrs', '--xattrs-include=trusted.overlay.opaque'];
  const tar = spawnLogged(argv, { stdio: ['pipe', 'ignore', 'pipe'], logger, signal });
  tar.stdin!.on('error', () => {});
  pack.pipe(tar.stdin!);
  await waitChild(argv, tar, signal);
  return { whiteouts, opaqueDirectories: [...opaque] };
}

/** True when every component of `relative` under `root` is a directory, not a symlink. */
async function isRealDirectoryPath(root: string, relative: string): Promise<boolean> {
  let path = root;
  for (const component of relative === '.' ? [] : relative.split('/')) {
    path = posix.join(path, component);
    const stat = await lstat(path).catch(() => undefined);
    if (!stat?.isDirectory()) return false;
  }
  return true;
}

/** Resolves when `child` exits 0; rejects with an {@link ExecError} carrying its stderr tail otherwise. */
function waitChild(argv: readonly string[], child: ChildProcess, signal: AbortSignal | undefined): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2048);
  });
  return new Promise((resolve, reject) => {
    let spawnError: Error | undefined;
    child.on('error', (error) => {
      spawnError = error;
    });
    child.on('close', (code) => {
      if (code === 0 && !spawnError) resolve();
      else if (signal?.aborted) reject(signal.reason as Error);
      else reject(new ExecError(argv, code, stderr || (spawnError?.message ?? ''), '', { cause: spawnError }));
    });
  });
}
