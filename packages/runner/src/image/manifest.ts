// Manifest, index and config shapes of the OCI image spec and Docker's image manifest v2 schema 2,
// their media types, validation of what a registry returns, and platform selection in an index.
import { arch as osArch, endianness } from 'node:os';
import { InvalidImageError, NoMatchingPlatformError } from './errors.js';

/** Media types we accept (OCI image spec media-types.md; Docker manifest v2 schema 2). */
export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** The `Accept` header for manifest requests: every manifest and index type above. */
export const MANIFEST_ACCEPT = [MediaTypes.ociIndex, MediaTypes.ociManifest, MediaTypes.dockerManifestList, MediaTypes.dockerManifest].join(
  ', ',
);

const LAYER_TYPES = new Set<string>([
  MediaTypes.ociLayer,
  MediaTypes.ociLayerGzip,
  MediaTypes.ociLayerZstd,
  MediaTypes.dockerLayerGzip,
  // Deprecated but still found in the wild (media-types.md "non-distributable").
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

/** A content descriptor (OCI image spec descriptor.md): `size` in bytes, `digest` as `algorithm:hex`. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

/** A platform (image-index.md): `os` and `architecture` in Go's GOOS/GOARCH terms, e.g. linux/arm64/v8. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** An image manifest (manifest.md) or Docker schema 2 manifest: one config and layers, base layer first. */
export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

/** An image index (image-index.md) or Docker manifest list: one manifest per platform. */
export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
}

/** The parts of an image config (config.md) that running a container needs. */
export interface RuntimeConfig {
  env: string[];
  cmd: string[];
  entrypoint: string[];
  user: string;
  workingDir: string;
  /** Image labels; `devcontainer.metadata` holds a JSON string merged by the devcontainer helper. */
  labels: Record<string, string>;
}

/** A parsed image config: runtime settings and `rootfs.diff_ids` (uncompressed layer digests, base first). */
export interface ImageConfig {
  platform: Platform;
  runtime: RuntimeConfig;
  diffIds: string[];
}

const DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

function parseDescriptor(reference: string, value: unknown, where: string): Descriptor {
  if (!isRecord(value)) throw new InvalidImageError(reference, `${where} is not an object`);
  const { mediaType, digest, size } = value;
  if (typeof mediaType !== 'string') throw new InvalidImageError(reference, `${where}.mediaType missing`);
  if (typeof digest !== 'string' || !DIGEST.test(digest))
    throw new InvalidImageError(reference, `${where}.digest "${String(digest)}" is not a sha256/sha512 digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw new InvalidImageError(reference, `${where}.size is not a byte count`);
  const descriptor: Descriptor = { mediaType, digest, size };
  if (isRecord(value.platform) && typeof value.platform.os === 'string' && typeof value.platform.architecture === 'string') {
    descriptor.platform = { os: value.platform.os, architecture: value.platform.architecture };
    if (typeof value.platform.variant === 'string') descriptor.platform.variant = value.platform.variant;
  }
  if (isRecord(value.annotations)) descriptor.annotations = value.annotations as Record<string, string>;
  if (Array.isArray(value.urls)) descriptor.urls = stringArray(value.urls);
  return descriptor;
}

/**
 * Parses manifest bytes returned by a registry. The type comes from the document's `mediaType`,
 * else the response's Content-Type, else its shape (`manifests` ⇒ index), as manifest.md allows
 * `mediaType` to be absent. Schema 1 manifests are rejected (deprecated by Docker since 2019).
 * @throws {InvalidImageError} when the bytes are not JSON, the type is unsupported, or a descriptor is malformed.
 */
export function parseManifest(reference: string, bytes: Buffer, contentType?: string): ImageManifest | ImageIndex {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new InvalidImageError(reference, 'manifest is not JSON', { cause: error });
  }
  if (!isRecord(document)) throw new InvalidImageError(reference, 'manifest is not a JSON object');
  const headerType = contentType?.split(';')[0]?.trim();
  const mediaType =
    typeof document.mediaType === 'string'
      ? document.mediaType
      : headerType && headerType !== 'application/json' && headerType !== 'application/octet-stream'
        ? headerType
        : Array.isArray(document.manifests)
          ? MediaTypes.ociIndex
          : MediaTypes.ociManifest;
  if (mediaType === MediaTypes.ociIndex || mediaType === MediaTypes.dockerManifestList) {
    if (!Array.isArray(document.manifests)) throw new InvalidImageError(reference, 'index has no manifests array');
    return {
      kind: 'index',
      mediaType,
      manifests: document.manifests.map((item, i) => parseDescriptor(reference, item, `manifests[${i}]`)),
    };
  }
  if (mediaType === MediaTypes.ociManifest || mediaType === MediaTypes.dockerManifest) {
    if (!Array.isArray(document.layers)) throw new InvalidImageError(reference, 'manifest has no layers array');
    const config = parseDescriptor(reference, document.config, 'config');
    const layers = document.layers.map((item, i) => parseDescriptor(reference, item, `layers[${i}]`));
    for (const layer of layers) {
      if (!LAYER_TYPES.has(layer.mediaType)) throw new InvalidImageError(reference, `unsupported layer media type "${layer.mediaType}"`);
    }
    return { kind: 'manifest', mediaType, config, layers };
  }
  throw new InvalidImageError(reference, `unsupported manifest media type "${mediaType}"`);
}

/**
 * Parses image config bytes (OCI image spec config.md; Docker's image JSON is the same shape).
 * Missing runtime fields become empty values; `Env`, `Cmd` … come from `config`, not `container_config`.
 * @throws {InvalidImageError} when the bytes are not a JSON object or `rootfs.diff_ids` is missing.
 */
export function parseImageConfig(reference: string, bytes: Buffer): ImageConfig {
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new InvalidImageError(reference, 'image config is not JSON', { cause: error });
  }
  if (!isRecord(document)) throw new InvalidImageError(reference, 'image config is not a JSON object');
  const rootfs = document.rootfs;
  if (!isRecord(rootfs) || !Array.isArray(rootfs.diff_ids)) throw new InvalidImageError(reference, 'image config has no rootfs.diff_ids');
  const diffIds = stringArray(rootfs.diff_ids);
  for (const diffId of diffIds) {
    if (!DIGEST.test(diffId)) throw new InvalidImageError(reference, `rootfs.diff_ids entry "${diffId}" is not a digest`);
  }
  const config = isRecord(document.config) ? document.config : {};
  const labels: Record<string, string> = {};
  if (isRecord(config.Labels)) {
    for (const [key, value] of Object.entries(config.Labels)) if (typeof value === 'string') labels[key] = value;
  }
  const platform: Platform = {
    os: typeof document.os === 'string' ? document.os : 'linux',
    architecture: typeof document.architecture === 'string' ? document.architecture : '',
  };
  if (typeof document.variant === 'string') platform.variant = document.variant;
  return {
    platform,
    diffIds,
    runtime: {
      env: stringArray(config.Env),
      cmd: stringArray(config.Cmd),
      entrypoint: stringArray(config.Entrypoint),
      user: typeof config.User === 'string' ? config.User : '',
      workingDir: typeof config.WorkingDir === 'string' ? config.WorkingDir : '',
      labels,
    },
  };
}

/**
 * The platform of this host in OCI terms: `linux` and Node's `process.arch` mapped to Go's GOARCH
 * (x64→amd64, ia32→386, ppc64→ppc64le on little-endian hosts …), with the ARM variant
 * (`v8` for arm64, `v6`/`v7` from Node's build for arm) as containerd's `platforms.DefaultSpec()` does.
 */
export function hostPlatform(): Platform {
  const nodeArch = osArch();
  switch (nodeArch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm': {
      const version = (process.config.variables as { arm_version?: string }).arm_version ?? '7';
      return { os: 'linux', architecture: 'arm', variant: `v${version}` };
    }
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    default:
      return { os: 'linux', architecture: nodeArch };
  }
}

/** Formats a platform as `os/architecture[/variant]`. */
export function formatPlatform(platform: Platform): string {
  return `${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ''}`;
}

/**
 * Rank of `candidate` for `wanted`: 0 = no match, higher = better. Follows containerd's
 * `platforms.Only` matcher: os and architecture must be equal; for arm64 an empty variant equals `v8`;
 * for arm a lower variant runs on a higher one (v7 host runs v6 and v5 images), preferring the closest.
 * For other architectures an exact variant beats no variant, which beats any other variant.
 */
function platformRank(candidate: Platform, wanted: Platform): number {
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return 0;
  const normalize = (platform: Platform) => (platform.architecture === 'arm64' && !platform.variant ? 'v8' : (platform.variant ?? ''));
  const have = normalize(candidate);
  const want = normalize(wanted);
  if (have === want) return 100;
  if (wanted.architecture === 'arm') {
    const haveVersion = Number(have.replace(/^v/, ''));
    const wantVersion = Number(want.replace(/^v/, '') || '7');
    if (Number.isInteger(haveVersion) && haveVersion <= wantVersion) return 50 + haveVersion;
    return 0;
  }
  if (have === '') return 40;
  if (wanted.architecture === 'amd64' && have === 'v1') return 40;
  return 0;
}

/**
 * Picks the manifest for `platform` from an index's `manifests` (image-index.md: "if multiple
 * manifests match a client or runtime's requirements, the first matching entry SHOULD be used").
 * Entries without `platform` (e.g. attestation manifests) never match.
 * @throws {NoMatchingPlatformError} naming the available platforms when none matches.
 */
export function selectPlatform(reference: string, manifests: readonly Descriptor[], platform: Platform = hostPlatform()): Descriptor {
  let best: Descriptor | undefined;
  let bestRank = 0;
  for (const descriptor of manifests) {
    if (!descriptor.platform) continue;
    if (descriptor.mediaType !== MediaTypes.ociManifest && descriptor.mediaType !== MediaTypes.dockerManifest) continue;
    const rank = platformRank(descriptor.platform, platform);
    if (rank > bestRank) {
      best = descriptor;
      bestRank = rank;
    }
  }
  if (!best) {
    const available = manifests.flatMap((descriptor) => (descriptor.platform ? [formatPlatform(descriptor.platform)] : []));
    throw new NoMatchingPlatformError(reference, formatPlatform(platform), available);
  }
  return best;
}
