// Host-side administration of a runner's image store, for `warren image list|prune` run on the runner host.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, silentLogger } from '@warren/base';
import { ImageStore, type ImageInfo } from './image/index.js';

/** Result of {@link pruneImages}. */
export interface ImagePruneReport {
  /** References of removed images. */
  removedImages: string[];
  /** Removed layer directories. */
  removedLayers: string[];
  freedBytes: number;
  /** Image digests kept because an environment on this runner (running or stopped) uses them. */
  inUse: string[];
}

function openStore(runnerDataDir: string, logger: Logger): ImageStore {
  return new ImageStore(join(runnerDataDir, 'images'), {}, logger);
}

/** @returns every image in the runner's store (`<runnerDataDir>/images`), no network access. */
export function listImages(runnerDataDir: string, logger: Logger = silentLogger): Promise<ImageInfo[]> {
  return openStore(runnerDataDir, logger).list();
}

/**
 * Digests of images used by environments that exist on this runner, read from each environment's
 * `state.json` (a stopped environment still needs its image: its overlay stacks on those layers).
 */
export async function imagesInUse(runnerDataDir: string): Promise<Set<string>> {
  const inUse = new Set<string>();
  const root = join(runnerDataDir, 'environments');
  const entries = await readdir(root).catch(() => [] as string[]);
  for (const entry of entries) {
    try {
      const state = JSON.parse(await readFile(join(root, entry, 'state.json'), 'utf8')) as { resolved?: { image?: { digest?: string } } };
      const digest = state.resolved?.image?.digest;
      if (digest) inUse.add(digest);
    } catch {
      // an environment still being created has no state yet: it pins nothing, its pull is protected by the runner
    }
  }
  return inUse;
}

/**
 * Removes images no environment on this runner uses, then layers and blobs no remaining image references.
 * Run it on the runner host; a pull running in the runner process at the same moment is not protected
 * (the store assumes one process per root), so prefer a quiet moment.
 */
export async function pruneImages(runnerDataDir: string, logger: Logger = silentLogger): Promise<ImagePruneReport> {
  const inUse = await imagesInUse(runnerDataDir);
  const result = await openStore(runnerDataDir, logger).prune(inUse);
  return { ...result, inUse: [...inUse] };
}
