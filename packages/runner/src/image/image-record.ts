// The image store's on-disk record of an image (`images/<sha256 of key>.json`): its one builder and its parser.
import type { ImageConfig, Platform, RuntimeConfig } from './manifest.js';

/** The on-disk record of an image (version 1); layer ids are stored, paths derived from `root` on read. */
export interface ImageRecord {
  version: 1;
  reference: string;
  digest: string;
  manifestDigest: string;
  configDigest: string;
  platform: Platform;
  /** Layer ids, base layer first (manifest order). */
  layerIds: string[];
  /** DiffIDs, base layer first. */
  diffIds: string[];
  config: RuntimeConfig;
  /** Extra blobs to keep (the index manifest). */
  blobs: string[];
  pulledTime: string;
}

/**
 * The record of an image pulled or imported now (`pulledTime` is the current time).
 * @param reference the canonical reference text it was pulled or imported as.
 * @param digests `digest` names what the reference names (the index of a multi-platform image, else the
 *   manifest); `manifestDigest` the platform's manifest; `configDigest` the config blob.
 * @param layerIds layer ids in manifest order (base layer first), as `imageConfig.diffIds`.
 */
export function imageRecord(
  reference: string,
  digests: Pick<ImageRecord, 'digest' | 'manifestDigest' | 'configDigest'>,
  imageConfig: ImageConfig,
  layerIds: string[],
): ImageRecord {
  return {
    version: 1,
    reference,
    ...digests,
    platform: imageConfig.platform,
    layerIds,
    diffIds: imageConfig.diffIds,
    config: imageConfig.runtime,
    blobs: [],
    pulledTime: new Date().toISOString(),
  };
}

/** Parses a record file's text. @returns undefined for a missing file, bad JSON or another version. */
export function parseRecord(text: string | undefined): ImageRecord | undefined {
  if (text === undefined) return undefined;
  try {
    const record = JSON.parse(text) as ImageRecord;
    return record.version === 1 ? record : undefined;
  } catch {
    return undefined;
  }
}
