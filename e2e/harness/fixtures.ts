// The e2e fixtures an environment needs, started together: a registry holding the test images, and a git server.
import { startGitServer, type TestGitServer } from '../fixtures/git-server.js';
import { ensureTestImages, type TestImages } from '../fixtures/images.js';
import { startRegistry, type TestRegistry } from '../fixtures/registry.js';

/** The running fixtures; {@link Fixtures.stop} stops both servers. */
export interface Fixtures {
  registry: TestRegistry;
  /** References of the test images in {@link Fixtures.registry} (scripts/test-images.sh builds and caches them). */
  images: TestImages;
  git: TestGitServer;
  /** Stops the git server and the registry. */
  stop(): Promise<void>;
}

/**
 * Starts a registry (docker-registry), pushes the cached test images to it, and starts a git server.
 * Needs docker-registry, skopeo, git and the images of scripts/test-images.sh (built on first use).
 * @throws {Error} (CommandError) when a tool is missing or fails; whatever was started is stopped again.
 */
export async function startFixtures(): Promise<Fixtures> {
  const registry = await startRegistry();
  let git: TestGitServer | undefined;
  try {
    const images = await ensureTestImages(registry);
    git = await startGitServer();
    const started = git;
    return {
      registry,
      images,
      git: started,
      async stop() {
        await started.stop();
        await registry.stop();
      },
    };
  } catch (error) {
    await git?.stop().catch(() => undefined);
    await registry.stop().catch(() => undefined);
    throw error;
  }
}
