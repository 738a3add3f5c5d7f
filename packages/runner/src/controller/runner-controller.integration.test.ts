// The runner protocol against the real control plane (Fastify app + PGlite store + controllers, in
// process): register, heartbeat, watch, status writes, access tokens verified with the server's JWKS,
// and a server restart in the middle (same data dir and port) that the runner survives.
// The host side is the in-memory FakeBackend, so this needs no root.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type Environment, type EnvironmentPhase, WarrenClient } from '@warren/api';
import { type Logger, silentLogger, sleep } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execInEnvironment } from '../access/client.js';
import { FakeBackend } from '../environment/fake-backend.js';
import { type RunningRunner, startRunner } from '../runner.js';
import { freePort, loadServerModules } from '../testing/integration-harness.js';

// The server package is not a dependency of the runner (the DAG forbids it), so its sources are loaded
// at run time by path, with just the shapes this test uses.
interface Store {
  close(): Promise<void>;
}
interface App {
  listen(options: { port: number; host: string }): Promise<string>;
  close(): Promise<void>;
}
interface ServerModules {
  openStore(options: { dataDir: string; logger: Logger }): Promise<Store>;
  bootstrap(store: Store): Promise<{ adminToken?: string }>;
  ensureRunnerToken(store: Store, name: string): Promise<string>;
  loadSigningKeys(store: Store): Promise<unknown>;
  buildApp(options: { store: Store; logger: Logger; signingKeys: unknown }): App;
  runControllers(options: { store: Store; logger: Logger; checkIntervalMs?: number }, signal: AbortSignal): Promise<void>;
}

/** One server process: store on `dataDir`, app on `port`, controllers running. */
async function startControlPlane(modules: ServerModules, dataDir: string, port: number) {
  const store = await modules.openStore({ dataDir, logger: silentLogger });
  const boot = await modules.bootstrap(store);
  const app = modules.buildApp({ store, logger: silentLogger, signingKeys: await modules.loadSigningKeys(store) });
  await app.listen({ port, host: '127.0.0.1' });
  const controllers = new AbortController();
  const running = modules.runControllers({ store, logger: silentLogger, checkIntervalMs: 200 }, controllers.signal);
  return {
    store,
    adminToken: boot.adminToken,
    async stop() {
      controllers.abort();
      await running;
      await app.close();
      await store.close();
    },
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  let last: unknown;
  for (let attempt = 0; attempt < 600; attempt++) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

describe('RunnerController against the real control plane', () => {
  let modules: ServerModules;
  let serverDir: string;
  let runnerDir: string;
  let port: number;
  let server: Awaited<ReturnType<typeof startControlPlane>>;
  let admin: WarrenClient;
  let runner: RunningRunner;
  const backend = new FakeBackend();

  const phaseOf = (id: string, phase: EnvironmentPhase) =>
    waitFor<Environment>(`phase ${phase}`, async () => {
      const environment = await admin.get('Environment', id);
      return environment.status.phase === phase ? environment : undefined;
    });

  beforeAll(async () => {
    modules = await loadServerModules<ServerModules>();
    serverDir = await mkdtemp(join(tmpdir(), 'warren-runner-controller-server-'));
    runnerDir = await mkdtemp(join(tmpdir(), 'warren-runner-controller-runner-'));
    port = await freePort();
    server = await startControlPlane(modules, serverDir, port);
    admin = new WarrenClient({ server: `http://127.0.0.1:${port}`, token: server.adminToken! });
    const runnerToken = await modules.ensureRunnerToken(server.store, 'controller-test');
    runner = await startRunner({
      server: `http://127.0.0.1:${port}`,
      token: runnerToken,
      name: 'controller-test',
      dataDir: runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      config: { heartbeatSeconds: 1, resyncSeconds: 2 },
      backend,
    });
  });

  afterAll(async () => {
    await runner?.close();
    await server?.stop();
    await rm(serverDir, { recursive: true, force: true });
    await rm(runnerDir, { recursive: true, force: true });
  });

  it('registers and heartbeats with capacity and its access endpoint', async () => {
    const registered = await waitFor('an Active runner', async () => {
      const found = await admin.get('Runner', runner.runnerId);
      return found.status.phase === 'Active' && found.status.capacity ? found : undefined;
    });
    expect(registered.metadata.name).toBe('controller-test');
    expect(registered.status.endpoints.access).toBe(runner.accessUrl);
    expect(registered.status.capacity?.environments).toBe(50);
    expect(registered.status.capacity?.cpuMillicores).toBeGreaterThan(0);
  });

  it('reconciles a scheduled environment, survives a server restart, and execs with a server-issued token', async () => {
    const created = await admin.createEnvironment({ metadata: { name: 'controller-env' }, spec: { source: { git: { url: 'https://example.test/repo.git' } } } });
    const id = created.metadata.id;
    const running = await phaseOf(id, 'Running');
    expect(running.status.runnerId).toBe(runner.runnerId);
    expect(running.status.observedGeneration).toBe(running.metadata.generation);
    expect(backend.host.get(id)?.container).toBe('running');

    // A server-issued access token is verified with the server's JWKS by the runner's access API.
    const stdout: Buffer[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (stdout.push(chunk), callback()) });
    const grant = await admin.createAccessGrant(id);
    expect(await execInEnvironment(grant, ['echo', 'through', 'the', 'runner'], { stdout: sink, stderr: new Writable({ write: (_c, _e, cb) => cb() }) })).toBe(0);
    expect(Buffer.concat(stdout).toString()).toBe('through the runner\n');

    // Restart the server on the same data dir and port; the runner must resume its watch.
    await server.stop();
    await sleep(300);
    server = await startControlPlane(modules, serverDir, port);
    await admin.setDesiredPhase(id, 'Stopped');
    await phaseOf(id, 'Stopped');
    expect(backend.host.get(id)?.container).toBe('absent');

    await admin.setDesiredPhase(id, 'Running');
    await phaseOf(id, 'Running');
    expect(backend.host.get(id)?.postStartRuns).toBe(2);
    expect(backend.host.get(id)?.createRuns).toBe(1);

    await admin.delete('Environment', id);
    await waitFor('the environment to be collected', async () => {
      try {
        await admin.get('Environment', id);
        return undefined;
      } catch {
        return true;
      }
    });
    expect(backend.host.has(id)).toBe(false);
  });
});
