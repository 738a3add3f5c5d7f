// The benches' fixtures: a local registry with the test images and a git server with one repository, as the e2e
// tests use them (e2e/fixtures), started from a bench's compiled copy (dist/).
import { randomBytes } from 'node:crypto';
import { lstat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTestImages } from '../../e2e/fixtures/images.js';
import { startGitServer } from '../../e2e/fixtures/git-server.js';
import { startRegistry } from '../../e2e/fixtures/registry.js';

/** The repository root, from this file's compiled copy `bench/<name>/dist/bench/shared/fixtures.js`. */
const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));
/** The compiling bench's `dist/`. */
const distRoot = fileURLToPath(new URL('../../', import.meta.url));

/** What {@link startBenchFixtures} started. */
export interface BenchFixtures {
  images: Awaited<ReturnType<typeof ensureTestImages>>;
  /** The repository made from `files` (`repo.url` to clone it). */
  repo: Awaited<ReturnType<Awaited<ReturnType<typeof startGitServer>>['createRepo']>>;
}

/**
 * Starts the registry (with the test images pushed) and the git server, and creates the repository `bench/<name><hex>`
 * holding the files `files(images)` returns (path -> content). Each stop is pushed onto `cleanups` as it starts.
 * @throws whatever a start throws (the images need scripts/test-images.sh, docker-registry and skopeo).
 */
export async function startBenchFixtures(
  name: string,
  files: (images: BenchFixtures['images']) => Record<string, string>,
  cleanups: Array<() => Promise<unknown>>,
): Promise<BenchFixtures> {
  // The e2e fixtures find scripts/test-images.sh next to their compiled selves.
  await lstat(join(distRoot, 'scripts')).catch(() => symlink(join(repoRoot, 'scripts'), join(distRoot, 'scripts')));
  const registry = await startRegistry();
  cleanups.push(() => registry.stop());
  const images = await ensureTestImages(registry);
  const git = await startGitServer();
  cleanups.push(() => git.stop());
  const repo = await git.createRepo(`bench/${name}${randomBytes(3).toString('hex')}`, files(images));
  return { images, repo };
}
