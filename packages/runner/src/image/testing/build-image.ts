// Test helpers: build layer tars, compress them and assemble OCI / Docker manifests in memory.
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { spawnLogged } from '../../linux/index.js';

/** One entry of a test layer; `type` defaults to `file`. */
export interface TestEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
}

/** A blob ready to push: bytes, digest and media type. */
export interface TestBlob {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

/** `sha256:<hex>` of `bytes`. */
export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Builds an uncompressed tar of `entries`, in order (directories default to 0755, files to 0644). */
export async function buildLayerTar(entries: TestEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header = {
      name: entry.name,
      type,
      mode: entry.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      mtime: new Date(1_700_000_000_000),
      ...(entry.linkname ? { linkname: entry.linkname } : {}),
    };
    if (type === 'file') pack.entry(header, entry.content ?? '');
    else pack.entry(header);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Compresses a tar with gzip (zlib) or zstd (the `zstd` tool), or returns it unchanged. */
export async function compress(tar: Buffer, compression: 'gzip' | 'zstd' | 'none'): Promise<Buffer> {
  if (compression === 'none') return tar;
  if (compression === 'gzip') return gzipSync(tar);
  const child = spawnLogged(['zstd', '-c', '-q', '-3'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  child.stdin!.end(tar);
  const code = await exited;
  if (code !== 0) throw new Error(`zstd exited with ${code}`);
  return Buffer.concat(chunks);
}

/** A built test layer: the compressed blob and the DiffID of its uncompressed tar. */
export interface TestLayer extends TestBlob {
  diffId: string;
}

/** Builds and compresses a layer; the media type matches the compression (OCI, or Docker for `docker`). */
export async function buildLayer(
  entries: TestEntry[],
  compression: 'gzip' | 'zstd' | 'none',
  flavour: 'oci' | 'docker' = 'oci',
): Promise<TestLayer> {
  const tar = await buildLayerTar(entries);
  const bytes = await compress(tar, compression);
  const mediaType =
    flavour === 'docker'
      ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
      : `application/vnd.oci.image.layer.v1.tar${compression === 'none' ? '' : `+${compression}`}`;
  return { bytes, digest: sha256(bytes), mediaType, diffId: sha256(tar) };
}

/** A test image: config and manifest blobs plus its layers, base first. */
export interface TestImage {
  config: TestBlob;
  manifest: TestBlob;
  layers: TestLayer[];
}

/** Builds an image config and manifest over `layers` (base first), OCI or Docker schema 2. */
export function buildImage(
  layers: TestLayer[],
  options: {
    flavour?: 'oci' | 'docker';
    architecture?: string;
    variant?: string;
    env?: string[];
    cmd?: string[];
    labels?: Record<string, string>;
  } = {},
): TestImage {
  const flavour = options.flavour ?? 'oci';
  const configDocument = {
    architecture: options.architecture ?? 'amd64',
    ...(options.variant ? { variant: options.variant } : {}),
    os: 'linux',
    config: { Env: options.env ?? ['PATH=/usr/bin'], Cmd: options.cmd ?? ['/bin/sh'], WorkingDir: '/', Labels: options.labels ?? {} },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
  };
  const configBytes = Buffer.from(JSON.stringify(configDocument));
  const config: TestBlob = {
    bytes: configBytes,
    digest: sha256(configBytes),
    mediaType: flavour === 'docker' ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json',
  };
  const manifestMediaType =
    flavour === 'docker' ? 'application/vnd.docker.distribution.manifest.v2+json' : 'application/vnd.oci.image.manifest.v1+json';
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: manifestMediaType,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.bytes.length },
      layers: layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.bytes.length })),
    }),
  );
  return { config, layers, manifest: { bytes: manifestBytes, digest: sha256(manifestBytes), mediaType: manifestMediaType } };
}

/** Builds an OCI image index over per-platform manifests. */
export function buildIndex(entries: { image: TestImage; platform: { os: string; architecture: string; variant?: string } }[]): TestBlob {
  const mediaType = 'application/vnd.oci.image.index.v1+json';
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: entries.map(({ image, platform }) => ({
        mediaType: image.manifest.mediaType,
        digest: image.manifest.digest,
        size: image.manifest.bytes.length,
        platform,
      })),
    }),
  );
  return { bytes, digest: sha256(bytes), mediaType };
}
