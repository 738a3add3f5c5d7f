// Shared setup of the runner's integration tests that need a real control plane and the e2e fixtures (registry,
// test images, git server). The runner may not import packages/server or e2e/ statically (tsc rootDir and the
// package DAG: a runner talks to the server only through the API), so their sources are loaded by path at run time.
import { createServer } from 'node:net';

/** Repository root: this file is packages/runner/{src,dist}/testing/. */
const root = new URL('../../../../', import.meta.url).pathname;

const SERVER_MODULES = [
  'packages/server/src/server.ts',
  'packages/server/src/storage/index.ts',
  'packages/server/src/auth/bootstrap.ts',
  'packages/server/src/auth/signing.ts',
  'packages/server/src/auth/tokens.ts',
  'packages/server/src/http/ports.ts',
  'packages/server/src/http/app.ts',
  'packages/server/src/controllers/index.ts',
];

/**
 * Loads the control plane's sources and merges their exports into one object, typed by the caller with the
 * subset it uses (e.g. `{ openStore, bootstrap, buildApp, runControllers }`).
 */
export async function loadServerModules<T>(): Promise<T> {
  const modules = await Promise.all(SERVER_MODULES.map((path) => import(`${root}${path}`) as Promise<Record<string, unknown>>));
  return Object.assign({}, ...modules) as T;
}

/** The running e2e fixtures: a registry holding the test images, and a git server. Stop both after use. */
export interface IntegrationFixtures<Images = { base: string }> {
  registry: { url: string; stop(): Promise<void> };
  images: Images;
  git: { createRepo(name: string, files: Record<string, string>): Promise<{ url: string }>; stop(): Promise<void> };
}

/** Starts the e2e fixtures (e2e/fixtures: startRegistry, ensureTestImages, startGitServer). */
export async function startFixtures<Images = { base: string }>(): Promise<IntegrationFixtures<Images>> {
  const load = (path: string) => import(`${root}${path}`) as Promise<Record<string, unknown>>;
  const [registry, images, git] = await Promise.all([load('e2e/fixtures/registry.ts'), load('e2e/fixtures/images.ts'), load('e2e/fixtures/git-server.ts')]);
  const fixtures = { ...registry, ...images, ...git } as unknown as {
    startRegistry(): Promise<IntegrationFixtures['registry']>;
    ensureTestImages(registry: IntegrationFixtures['registry']): Promise<Images>;
    startGitServer(): Promise<IntegrationFixtures['git']>;
  };
  const started = await fixtures.startRegistry();
  return { registry: started, images: await fixtures.ensureTestImages(started), git: await fixtures.startGitServer() };
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.once('error', reject);
  });
}
