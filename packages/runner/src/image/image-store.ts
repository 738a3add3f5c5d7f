// The runner's image store: pulls images, unpacks each layer once into a content-addressed directory
// shared read-only by every environment, and keeps an on-disk index so images survive restarts.
//
// Layout under `root` (short paths: overlay mount options must fit in one page):
//   blobs/sha256/<hex>      manifests and configs (layer blobs only while they are being unpacked)
//   layers/<16 hex>/        an unpacked layer, keyed by its DiffID; owned by root with the image's ids
//   layers/<16 hex>.json    the layer's full DiffID and sizes
//   images/<sha256 of key>.json   an image record per lookup key (`name:tag` and `name@digest`)
//   tmp/                    unpack and download scratch space, emptied on first use
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { type Logger, errorMessage, isAbortError } from '@warren/base';
import { type ExecCgroup, exec } from '../linux/index.js';
import { DigestMismatchError, InvalidImageError } from './errors.js';
import { unpackLayer } from './layer-unpack.js';
import { type ImageRecord, imageRecord, parseRecord } from './image-record.js';
import { type Descriptor, MediaTypes, type Platform, type RuntimeConfig, parseImageConfig } from './manifest.js';
import { type ImageReference, formatReference, lookupKey, parseReference, referenceName } from './reference.js';
import { type RegistryConfig, type RegistryEndpoint, RegistryClient, digestAlgorithm } from './registry-client.js';
import { SharedFlight } from './shared-flight.js';

/** Image store settings: registry access plus download parallelism. */
export interface ImageStoreConfig extends RegistryConfig {
  /** Layers downloaded at once per pull (default 3, as `docker pull`). */
  maxConcurrentDownloads?: number;
}

/** A pulled or imported image, ready to run. */
export interface ImageInfo {
  /** Canonical reference it was pulled as, e.g. `docker.io/library/ubuntu:22.04`. */
  reference: string;
  /** Digest of what the reference names (the index for multi-platform images); pin environments to this. */
  digest: string;
  /** Digest of the platform's image manifest. */
  manifestDigest: string;
  /** Digest of the image config blob (the image ID in Docker's terms). */
  configDigest: string;
  /** Platform of the image config. */
  platform: Platform;
  /** Absolute unpacked layer directories, top layer FIRST, ready for overlay `lowerdir=` joined by `:`. */
  layers: string[];
  /** Layer DiffIDs, top layer first (same order as `layers`). */
  diffIds: string[];
  /** Runtime settings from the image config; `labels['devcontainer.metadata']` is a JSON string. */
  config: RuntimeConfig;
  /** When the reference was last resolved against its registry (or imported), RFC 3339. */
  pulledTime: string;
}

/** Options of {@link ImageStore.pull}. */
export interface PullOptions {
  /** Called as bytes of layer blobs arrive: compressed bytes done and total of the image's layers. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Aborting stops this caller's wait; the download stops when every caller sharing it has aborted. */
  signal?: AbortSignal;
}

/** What {@link ImageStore.prune} removed. `freedBytes` is disk usage as `du` counts it, plus blob sizes. */
export interface PruneResult {
  removedImages: string[];
  removedLayers: string[];
  freedBytes: number;
}

interface LayerMeta {
  diffId: string;
  tarBytes: number;
  unpackedTime: string;
}

/** Length of a layer id: 16 hex digits (64 bits) of the DiffID keep lowerdir options short. */
const LAYER_ID_LENGTH = 16;

/** The layer directory name for a DiffID: its first 16 hex digits. */
export function layerId(diffId: string): string {
  return diffId.slice(diffId.indexOf(':') + 1, diffId.indexOf(':') + 1 + LAYER_ID_LENGTH);
}

/**
 * Content-addressed image store of one runner. All methods are safe to call concurrently within one
 * process: pulls of one reference share one pull, and layers shared between images are downloaded and
 * unpacked once. One process per `root` (the runner holds it).
 */
export class ImageStore {
  private readonly client: RegistryClient;
  private readonly pulls = new SharedFlight<ImageInfo>();
  private readonly layerFlights = new SharedFlight<string>();
  private readonly progressListeners = new Map<string, Set<(done: number, total: number) => void>>();
  /** Reference counts of layer ids and blob digests in use by pulls and imports in flight; prune keeps them. */
  private readonly pinned = new Map<string, number>();
  private prepared: Promise<void> | undefined;

  /**
   * @param root the store directory, e.g. `/var/lib/warren/images`; created on first use.
   * @param options.fetch replaces the global fetch (tests); options.platform overrides the host platform;
   *   options.cgroup is where layer unpacking (tar, zstd) runs: Warren's background group (docs/design/0012-io-limits.md).
   */
  constructor(
    readonly root: string,
    private readonly config: ImageStoreConfig,
    private readonly logger: Logger,
    private readonly options: { fetch?: typeof fetch; platform?: Platform; cgroup?: ExecCgroup } = {},
  ) {
    this.client = new RegistryClient(config, logger, options.fetch ? { fetch: options.fetch } : {});
  }

  /**
   * Pulls `reference` (Docker reference syntax) for the host platform unless it is already in the
   * store at the digest the registry names now, and returns it. Concurrent pulls of one reference
   * share one pull; each caller gets its own progress calls.
   * @throws {InvalidReferenceError} for a malformed reference.
   * @throws {ImageNotFoundError} | {RegistryUnreachableError} | {RegistryUnauthorizedError} | {RegistryError}
   *   from the registry (after trying its mirrors), {DigestMismatchError} for corrupt content,
   *   {NoMatchingPlatformError}, {InvalidImageError}, {ExecError} when unpacking fails; the abort reason on abort.
   */
  async pull(reference: string, options: PullOptions = {}): Promise<ImageInfo> {
    const parsed = parseReference(reference);
    const key = lookupKey(parsed);
    await this.prepare();
    let listeners = this.progressListeners.get(key);
    if (!listeners) {
      listeners = new Set();
      this.progressListeners.set(key, listeners);
    }
    const listener = options.onProgress;
    if (listener) listeners.add(listener);
    const broadcast = listeners;
    try {
      return await this.pulls.run(key, options.signal, async (signal) => {
        try {
          return await this.pullOnce(parsed, signal, (done, total) => {
            for (const notify of broadcast) notify(done, total);
          });
        } finally {
          if (this.progressListeners.get(key) === broadcast) this.progressListeners.delete(key);
        }
      });
    } finally {
      if (listener) broadcast.delete(listener);
    }
  }

  /**
   * Returns the image stored for `reference` (by digest when it has one, else by tag) without any
   * network access, or undefined when it was never pulled, was pruned, or a layer directory is missing.
   * @throws {InvalidReferenceError} for a malformed reference.
   */
  async get(reference: string): Promise<ImageInfo | undefined> {
    const record = await this.readRecord(lookupKey(parseReference(reference)));
    if (!record) return undefined;
    for (const id of record.layerIds) {
      if (!(await exists(this.layerPath(id)))) return undefined;
    }
    return this.toInfo(record);
  }

  /** Every stored image, one per digest (the most recently pulled reference wins), sorted by reference. */
  async list(): Promise<ImageInfo[]> {
    const byDigest = new Map<string, ImageRecord>();
    for (const record of await this.readRecords()) {
      const current = byDigest.get(record.digest);
      if (
        !current ||
        record.pulledTime > current.pulledTime ||
        (record.pulledTime === current.pulledTime && !record.reference.includes('@'))
      ) {
        byDigest.set(record.digest, record);
      }
    }
    return [...byDigest.values()].map((record) => this.toInfo(record)).sort((a, b) => a.reference.localeCompare(b.reference));
  }

  /**
   * Removes images whose digest (or platform manifest digest) is not in `inUse`, then every layer
   * directory and blob no remaining image references, and leftover scratch files. Layers and blobs of
   * pulls in flight are kept.
   * @returns the removed references and layer ids, and the bytes freed.
   */
  async prune(inUse: ReadonlySet<string>): Promise<PruneResult> {
    await this.prepare();
    const removedImages: string[] = [];
    const kept: ImageRecord[] = [];
    for (const [file, record] of await this.readRecordFiles()) {
      if (inUse.has(record.digest) || inUse.has(record.manifestDigest)) {
        kept.push(record);
        continue;
      }
      await rm(file, { force: true });
      removedImages.push(record.reference);
    }
    const keepLayers = new Set(kept.flatMap((record) => record.layerIds));
    const keepBlobs = new Set(kept.flatMap((record) => [record.digest, record.manifestDigest, record.configDigest, ...record.blobs]));
    let freedBytes = 0;
    const removedLayers: string[] = [];
    for (const name of await readdirOrEmpty(join(this.root, 'layers'))) {
      const id = name.replace(/\.json$/, '');
      if (keepLayers.has(id) || this.pinned.has(id)) continue;
      const path = join(this.root, 'layers', name);
      if (!name.endsWith('.json')) {
        freedBytes += await diskUsage(path, this.logger);
        removedLayers.push(id);
      }
      await rm(path, { recursive: true, force: true });
    }
    for (const algorithm of await readdirOrEmpty(join(this.root, 'blobs'))) {
      for (const hex of await readdirOrEmpty(join(this.root, 'blobs', algorithm))) {
        const digest = `${algorithm}:${hex.replace(/\..*$/, '')}`;
        if (keepBlobs.has(digest) || this.pinned.has(digest)) continue;
        const path = join(this.root, 'blobs', algorithm, hex);
        freedBytes += (await stat(path).catch(() => undefined))?.size ?? 0;
        await rm(path, { force: true });
      }
    }
    this.logger.info({ removedImages: removedImages.length, removedLayers: removedLayers.length, freedBytes }, 'image store pruned');
    return { removedImages: [...new Set(removedImages)], removedLayers, freedBytes };
  }

  /**
   * Imports the output of `docker save` (Docker 20.10 format: `manifest.json` listing `Config` and
   * `Layers` tar paths, uncompressed or compressed layers) as `reference`, so a builder backend can
   * hand over a locally built image. The archive entry whose `RepoTags` matches `reference` is used,
   * or the only entry. Its digest is that of an OCI manifest synthesized over the config and the layer
   * tars as stored in the archive (the archive carries no registry manifest).
   * @throws {InvalidImageError} when the archive lacks manifest.json, the entry, the config or a layer,
   *   {DigestMismatchError} when a layer's DiffID differs from the config's, {ExecError} from tar.
   */
  async importDockerArchive(tarPath: string, reference: string): Promise<ImageInfo> {
    const parsed = parseReference(reference);
    const text = formatReference(parsed);
    await this.prepare();
    const scratch = await mkdtemp(join(this.root, 'tmp', 'a-'));
    const pins: string[] = [];
    try {
      await exec(['tar', '-x', '-f', tarPath, '-C', scratch, '--no-same-owner'], { logger: this.logger });
      const manifestText = await readFile(join(scratch, 'manifest.json'), 'utf8').catch((error: unknown) => {
        throw new InvalidImageError(text, 'archive has no manifest.json (not a docker save archive?)', { cause: error });
      });
      const entries = JSON.parse(manifestText) as { Config?: string; RepoTags?: string[] | null; Layers?: string[] }[];
      if (!Array.isArray(entries) || entries.length === 0) throw new InvalidImageError(text, 'archive manifest.json lists no image');
      const wanted = lookupKey(parsed);
      const entry =
        entries.find((item) => (item.RepoTags ?? []).some((tag) => safeLookupKey(tag) === wanted)) ??
        (entries.length === 1 ? entries[0] : undefined);
      if (!entry?.Config || !Array.isArray(entry.Layers)) throw new InvalidImageError(text, `archive has no image tagged ${text}`);
      const configBytes = await readFile(await insidePath(scratch, entry.Config, text));
      const configDigest = sha256(configBytes);
      const imageConfig = parseImageConfig(text, configBytes);
      if (imageConfig.diffIds.length !== entry.Layers.length)
        throw new InvalidImageError(text, `config lists ${imageConfig.diffIds.length} layers, archive ${entry.Layers.length}`);
      const layerDescriptors: Descriptor[] = [];
      const layerIds: string[] = [];
      for (const [index, layerPath] of entry.Layers.entries()) {
        const diffId = imageConfig.diffIds[index]!;
        const file = await insidePath(scratch, layerPath, text);
        const id = layerId(diffId);
        this.pin(id);
        pins.push(id);
        await this.layerFlights.run(id, undefined, (signal) => this.unpackIfMissing(text, diffId, file, signal));
        const size = (await stat(file)).size;
        layerDescriptors.push({ mediaType: MediaTypes.ociLayer, digest: await sha256File(file), size });
        layerIds.push(id);
      }
      const configDescriptor = { mediaType: MediaTypes.ociConfig, digest: configDigest, size: configBytes.length };
      const manifestBytes = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: configDescriptor, layers: layerDescriptors }),
      );
      const manifestDigest = sha256(manifestBytes);
      await this.writeBlob(configDigest, configBytes);
      await this.writeBlob(manifestDigest, manifestBytes);
      const record = imageRecord(text, { digest: manifestDigest, manifestDigest, configDigest }, imageConfig, layerIds);
      await this.writeRecords(parsed, record);
      this.logger.info({ reference: text, digest: manifestDigest, layers: layerIds.length }, 'image imported');
      return this.toInfo(record);
    } finally {
      for (const pin of pins) this.unpin(pin);
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** One pull: resolve, fetch config, ensure every layer, write records. */
  private async pullOnce(
    reference: ImageReference,
    signal: AbortSignal,
    progress: (done: number, total: number) => void,
  ): Promise<ImageInfo> {
    const text = formatReference(reference);
    if (reference.digest !== undefined) {
      // Content named by digest cannot change: no need to ask the registry again.
      const stored = await this.get(text);
      if (stored) return stored;
    }
    const started = performance.now();
    const resolved = await this.client.resolve(reference, {
      signal,
      ...(this.options.platform ? { platform: this.options.platform } : {}),
    });
    const { manifest, endpoint } = resolved;
    const pins = [resolved.digest, resolved.manifestDigest, manifest.config.digest];
    for (const pin of pins) this.pin(pin);
    try {
      let configBytes: Buffer | undefined = await readFile(this.blobPath(manifest.config.digest)).catch(() => undefined);
      if (!configBytes || sha256Of(manifest.config.digest, configBytes) !== manifest.config.digest) {
        configBytes = await this.client.fetchBlobBytes(reference, manifest.config, { signal, preferred: endpoint });
        await this.writeBlob(manifest.config.digest, configBytes);
      }
      const imageConfig = parseImageConfig(text, configBytes);
      if (imageConfig.diffIds.length !== manifest.layers.length) {
        throw new InvalidImageError(
          text,
          `manifest has ${manifest.layers.length} layers but config lists ${imageConfig.diffIds.length} diff_ids`,
        );
      }
      const layerIds = imageConfig.diffIds.map(layerId);
      for (const id of layerIds) this.pin(id);
      pins.push(...layerIds);

      const total = manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
      let done = 0;
      for (const [index, id] of layerIds.entries()) if (await exists(this.layerPath(id))) done += manifest.layers[index]!.size;
      progress(done, total);
      let next = 0;
      const worker = async () => {
        while (next < manifest.layers.length) {
          const index = next++;
          const descriptor = manifest.layers[index]!;
          const diffId = imageConfig.diffIds[index]!;
          const id = layerIds[index]!;
          if (await exists(this.layerPath(id))) continue;
          let counted = 0;
          await this.layerFlights.run(id, signal, (layerSignal) =>
            this.downloadAndUnpack(reference, descriptor, diffId, endpoint, layerSignal, (bytes) => {
              // A download retried from another endpoint counts its layer at most once.
              const add = Math.min(bytes, descriptor.size - counted);
              counted += add;
              done += add;
              progress(done, total);
            }),
          );
          // A layer fetched by another pull in the meantime still counts.
          done += descriptor.size - counted;
          progress(done, total);
        }
      };
      const workers = Array.from({ length: Math.max(1, this.config.maxConcurrentDownloads ?? 3) }, worker);
      const results = await Promise.allSettled(workers);
      const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failed) throw failed.reason;

      // Keep the manifests as served, so the image's digests can be checked offline later.
      await this.writeBlob(resolved.manifestDigest, resolved.manifestBytes);
      if (resolved.indexBytes) await this.writeBlob(resolved.digest, resolved.indexBytes);
      const record = imageRecord(
        text,
        { digest: resolved.digest, manifestDigest: resolved.manifestDigest, configDigest: manifest.config.digest },
        imageConfig,
        layerIds,
      );
      await this.writeRecords(reference, record);
      this.logger.info(
        {
          reference: text,
          digest: resolved.digest,
          endpoint: `${endpoint.host}/${endpoint.repository}`,
          layers: layerIds.length,
          durationMs: Math.round(performance.now() - started),
        },
        'image pulled',
      );
      return this.toInfo(record);
    } finally {
      for (const pin of pins) this.unpin(pin);
    }
  }

  /** Downloads a layer blob (verified) and unpacks it; the blob is removed afterwards. @returns the layer id. */
  private async downloadAndUnpack(
    reference: ImageReference,
    descriptor: Descriptor,
    diffId: string,
    endpoint: RegistryEndpoint,
    signal: AbortSignal,
    onBytes: (bytes: number) => void,
  ): Promise<string> {
    const text = formatReference(reference);
    const blob = this.blobPath(descriptor.digest);
    this.pin(descriptor.digest);
    try {
      if (!(await exists(blob))) {
        await mkdir(join(this.root, 'blobs', digestAlgorithm(descriptor.digest)), { recursive: true });
        await this.client.downloadBlob(reference, descriptor, blob, { signal, preferred: endpoint, onBytes });
      }
      const id = await this.unpackIfMissing(text, diffId, blob, signal);
      await rm(blob, { force: true });
      return id;
    } finally {
      this.unpin(descriptor.digest);
    }
  }

  /**
   * Unpacks `file` into `layers/<id>` unless present: into a scratch dir first, checked against `diffId`,
   * then renamed into place, so a layer directory is either complete or absent.
   */
  private async unpackIfMissing(text: string, diffId: string, file: string, signal: AbortSignal): Promise<string> {
    const id = layerId(diffId);
    const target = this.layerPath(id);
    if (await exists(target)) return id;
    const scratch = await mkdtemp(join(this.root, 'tmp', `l-${id}-`));
    try {
      // mkdtemp makes 0700; a layer root is 0755 like containerd's unless the tar has a `./` entry.
      await chmod(scratch, 0o755);
      const started = performance.now();
      const result = await unpackLayer(file, scratch, { logger: this.logger, signal, cgroup: this.options.cgroup });
      if (result.diffId !== diffId) throw new DigestMismatchError(text, diffId, result.diffId, 'layer DiffID');
      const meta: LayerMeta = { diffId, tarBytes: result.tarBytes, unpackedTime: new Date().toISOString() };
      await writeFileAtomic(join(this.root, 'layers', `${id}.json`), JSON.stringify(meta));
      try {
        await rename(scratch, target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
        // Another process got there first; its copy is equally good.
      }
      this.logger.info(
        {
          reference: text,
          diffId,
          tarBytes: result.tarBytes,
          whiteouts: result.whiteouts.length,
          durationMs: Math.round(performance.now() - started),
        },
        'layer unpacked',
      );
      return id;
    } catch (error) {
      if (!isAbortError(error)) this.logger.warn({ reference: text, diffId, error: errorMessage(error) }, 'layer unpack failed');
      throw error;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** Creates the layout once per process and empties `tmp/` of scratch left by a crash. */
  private prepare(): Promise<void> {
    this.prepared ??= (async () => {
      await rm(join(this.root, 'tmp'), { recursive: true, force: true });
      for (const dir of ['blobs/sha256', 'layers', 'images', 'tmp']) await mkdir(join(this.root, dir), { recursive: true, mode: 0o700 });
      // Layer dirs are overlay lower dirs: the path to them must be traversable, their listing need not be readable.
      await chmod(this.root, 0o711);
      await chmod(join(this.root, 'layers'), 0o711);
    })();
    const prepared = this.prepared;
    prepared.catch(() => {
      if (this.prepared === prepared) this.prepared = undefined;
    });
    return prepared;
  }

  private pin(key: string): void {
    this.pinned.set(key, (this.pinned.get(key) ?? 0) + 1);
  }

  private unpin(key: string): void {
    const count = (this.pinned.get(key) ?? 1) - 1;
    if (count <= 0) this.pinned.delete(key);
    else this.pinned.set(key, count);
  }

  private layerPath(id: string): string {
    return join(this.root, 'layers', id);
  }

  private blobPath(digest: string): string {
    return join(this.root, 'blobs', digestAlgorithm(digest), digest.slice(digest.indexOf(':') + 1));
  }

  private async writeBlob(digest: string, bytes: Buffer): Promise<void> {
    await mkdir(join(this.root, 'blobs', digestAlgorithm(digest)), { recursive: true });
    await writeFileAtomic(this.blobPath(digest), bytes);
  }

  private recordPath(key: string): string {
    return join(this.root, 'images', `${createHash('sha256').update(key).digest('hex')}.json`);
  }

  /** Writes the record under the reference's lookup key and under `name@digest`. */
  private async writeRecords(reference: ImageReference, record: ImageRecord): Promise<void> {
    const keys = new Set([lookupKey(reference), `${referenceName(reference)}@${record.digest}`]);
    for (const key of keys) await writeFileAtomic(this.recordPath(key), JSON.stringify(record, null, 2));
  }

  private async readRecord(key: string): Promise<ImageRecord | undefined> {
    return parseRecord(await readFile(this.recordPath(key), 'utf8').catch(() => undefined));
  }

  private async readRecordFiles(): Promise<[string, ImageRecord][]> {
    const out: [string, ImageRecord][] = [];
    for (const name of await readdirOrEmpty(join(this.root, 'images'))) {
      if (!name.endsWith('.json')) continue;
      const file = join(this.root, 'images', name);
      const record = parseRecord(await readFile(file, 'utf8').catch(() => undefined));
      if (record) out.push([file, record]);
    }
    return out;
  }

  private async readRecords(): Promise<ImageRecord[]> {
    return (await this.readRecordFiles()).map(([, record]) => record);
  }

  private toInfo(record: ImageRecord): ImageInfo {
    return {
      reference: record.reference,
      digest: record.digest,
      manifestDigest: record.manifestDigest,
      configDigest: record.configDigest,
      platform: record.platform,
      layers: record.layerIds.map((id) => this.layerPath(id)).reverse(),
      diffIds: [...record.diffIds].reverse(),
      config: record.config,
      pulledTime: record.pulledTime,
    };
  }
}

function safeLookupKey(text: string): string | undefined {
  try {
    return lookupKey(parseReference(text));
  } catch {
    return undefined;
  }
}

/** Resolves `relative` inside `root` (following symlinks, as docker save links repeated layers). */
async function insidePath(root: string, relative: string, text: string): Promise<string> {
  const resolved = await realpath(join(root, relative)).catch((error: unknown) => {
    throw new InvalidImageError(text, `archive lacks ${relative}`, { cause: error });
  });
  const realRoot = await realpath(root);
  if (!resolved.startsWith(realRoot + sep)) throw new InvalidImageError(text, `archive path ${relative} escapes the archive`);
  return resolved;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function sha256Of(digest: string, bytes: Buffer): string {
  const algorithm = digestAlgorithm(digest);
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function readdirOrEmpty(path: string): Promise<string[]> {
  return readdir(path).catch(() => []);
}

async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, data);
    await rename(temporary, path);
  } finally {
    await rm(temporary, { force: true });
  }
}

/** Bytes a directory occupies on disk (`du -s -B1`, hard links counted once); 0 when du fails. */
async function diskUsage(path: string, logger: Logger): Promise<number> {
  try {
    const { stdout } = await exec(['du', '-s', '-B1', path], { logger });
    return Number(stdout.split(/\s/)[0]) || 0;
  } catch {
    return 0;
  }
}
