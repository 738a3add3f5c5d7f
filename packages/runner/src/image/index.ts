// Public API of the runner's image store: references, registry client, layer unpacking and the store.
export { parseReference, formatReference, referenceName, lookupKey, DOCKER_HUB } from './reference.js';
export type { ImageReference } from './reference.js';
export {
  InvalidReferenceError,
  RegistryUnreachableError,
  ImageNotFoundError,
  RegistryUnauthorizedError,
  DigestMismatchError,
  NoMatchingPlatformError,
  InvalidImageError,
  RegistryError,
} from './errors.js';
export { MediaTypes, parseManifest, parseImageConfig, hostPlatform, formatPlatform, selectPlatform } from './manifest.js';
export type { Descriptor, Platform, ImageManifest, ImageIndex, ImageConfig, RuntimeConfig } from './manifest.js';
export { RegistryClient, parseWwwAuthenticate, isLoopbackHost } from './registry-client.js';
export type {
  RegistryConfig,
  RegistryCredentials,
  RegistryEndpoint,
  ResolvedManifest,
  AuthChallenge,
  RegistryClientOptions,
} from './registry-client.js';
export { unpackLayer, detectCompression } from './layer-unpack.js';
export type { UnpackedLayer, LayerCompression } from './layer-unpack.js';
export { ImageStore, layerId } from './image-store.js';
export type { ImageStoreConfig, ImageInfo, PullOptions, PruneResult } from './image-store.js';
export { SharedFlight } from './shared-flight.js';
