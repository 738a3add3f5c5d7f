// The main job end to end in one process: control plane (app + PGlite + controllers), startRunner with
// the Linux backend, a repository with devcontainer.json on a git server and its image in a registry.
// An environment goes to Running; exec through the access API with a server-issued token runs as
// remoteUser in the workspace folder with containerEnv/remoteEnv, streams stdout/stderr apart and passes
// the exit code through; the lifecycle log is served; delete leaves nothing.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { type Environment, type EnvironmentPhase, WarrenClient, getCondition } from '@warren/api';
import { type Logger, silentLogger, sleep } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execInEnvironment, followLogs } from './access/client.js';
import { CgroupManager } from './linux/cgroups.js';
import { readMountInfo } from './linux/idmap.js';
import { RuncRuntime } from './linux/runtime.js';
import { type RunningRunner, startRunner } from './runner.js';
import { freePort, loadServerModules, startFixtures, type IntegrationFixtures } from './testing/integration-harness.js';

interface Store {
  close(): Promise<void>;
}
interface ServerModules {
  openStore(options: { dataDir: string; logger: Logger }): Promise<Store>;
  bootstrap(store: Store): Promise<{ adminToken?: string }>;
  ensureRunnerToken(store: Store, name: string): Promise<string>;
  loadSigningKeys(store: Store): Promise<unknown>;
  buildApp(options: { store: Store; logger: Logger; signingKeys: unknown }): { listen(options: { port: number; host: string }): Promise<string>; close(): Promise<void> };
  runControllers(options: { store: Store; logger: Logger; checkIntervalMs?: number }, signal: AbortSignal): Promise<void>;
}
type Fixtures = IntegrationFixtures<{ base: string }>;
/** Own slot range, apart from `warren up` (0...), the other suites (1000..13000) and the network tests (15000...). */
const SLOT_OFFSET = 13_000 + (process.pid % 50) * 40;

async function loadModules(): Promise<{ server: ServerModules; fixtures: Fixtures }> {
  return { server: await loadServerModules<ServerModules>(), fixtures: await startFixtures<Fixtures['images']>() };
}


function sink() {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({ write: (chunk: Buffer, _encoding, callback) => void (chunks.push(chunk), callback()) }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

describe('warren main job in one process (server + runner with the Linux backend)', () => {
  let modules: Awaited<ReturnType<typeof loadModules>>;
  let serverDir: string;
  let runnerDir: string;
  let store: Store;
  let app: ReturnType<ServerModules['buildApp']>;
  const controllers = new AbortController();
  let controllersDone: Promise<void>;
  let admin: WarrenClient;
  let runner: RunningRunner;
  const runtime = new RuncRuntime({ stateRoot: `/run/warren/runc-runner-test-${process.pid}` });
  let cgroups: CgroupManager;

  const phaseOf = async (id: string, phase: EnvironmentPhase): Promise<Environment> => {
    let last: Environment | undefined;
    for (let attempt = 0; attempt < 1200; attempt++) {
      last = await admin.get('Environment', id);
      if (last.status.phase === phase) return last;
      if (last.status.phase === 'Failed') break;
      await sleep(100);
    }
    throw new Error(`environment did not reach ${phase}: ${JSON.stringify(last?.status)}`);
  };

  beforeAll(async () => {
    modules = await loadModules();
    serverDir = await mkdtemp(join(tmpdir(), 'warren-main-server-'));
    runnerDir = await mkdtemp(join(tmpdir(), 'warren-main-runner-'));
    const port = await freePort();
    store = await modules.server.openStore({ dataDir: serverDir, logger: silentLogger });
    const boot = await modules.server.bootstrap(store);
    app = modules.server.buildApp({ store, logger: silentLogger, signingKeys: await modules.server.loadSigningKeys(store) });
    await app.listen({ port, host: '127.0.0.1' });
    controllersDone = modules.server.runControllers({ store, logger: silentLogger, checkIntervalMs: 200 }, controllers.signal);
    admin = new WarrenClient({ server: `http://127.0.0.1:${port}`, token: boot.adminToken! });
    cgroups = await CgroupManager.detect({ parent: `warren-main-${process.pid}` });
    runner = await startRunner({
      server: `http://127.0.0.1:${port}`,
      token: await modules.server.ensureRunnerToken(store, 'main-test'),
      name: 'main-test',
      dataDir: runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      config: { slotOffset: SLOT_OFFSET, heartbeatSeconds: 1 },
      // The host firewall table is shared with other suites running in parallel; this test needs no egress.
      linux: { firewall: false, runtime, cgroups },
    });
  });

  afterAll(async () => {
    await runner?.close();
    controllers.abort();
    await controllersDone;
    await app?.close();
    await store?.close();
    await cgroups?.removeParent().catch(() => {});
    await rm(runtime.stateRoot, { recursive: true, force: true });
    await rm(`${runtime.stateRoot}-exec`, { recursive: true, force: true });
    for (const dir of [serverDir, runnerDir]) if (dir) await rm(dir, { recursive: true, force: true });
    await modules?.fixtures.git.stop();
    await modules?.fixtures.registry.stop();
  });

  it('creates an environment from a repository, execs in it through the access API, and deletes it', async () => {
    const { fixtures } = modules;
    const repo = await fixtures.git.createRepo(`acme/main${process.pid}`, {
      '.devcontainer/devcontainer.json': `{
        // a real-world shaped config
        "name": "main",
        "image": "${fixtures.images.base}",
        "containerEnv": { "GREETING": "hello" },
        "remoteEnv": { "FAREWELL": "bye-\${containerEnv:GREETING}" },
        "postCreateCommand": "echo post-create ran",
      }`,
    });
    const created = await admin.createEnvironment({ metadata: { name: 'main' }, spec: { source: { git: { url: repo.url } } } });
    const running = await phaseOf(created.metadata.id, 'Running');
    expect(running.status.runnerId).toBe(runner.runnerId);
    expect(getCondition(running.status.conditions, 'LifecycleCommandsSucceeded')?.status).toBe('True');
    expect(running.status.devcontainer).toMatchObject({ remoteUser: 'vscode', workspaceFolder: `/workspaces/main${process.pid}` });

    const grant = await admin.createAccessGrant(created.metadata.id);
    const out = sink();
    const err = sink();
    const code = await execInEnvironment(grant, ['sh', '-c', 'id -un; pwd; echo "$GREETING $FAREWELL"; echo to-stderr >&2; exit 5'], {
      stdout: out.stream,
      stderr: err.stream,
    });
    expect(code).toBe(5);
    expect(out.text()).toBe(`vscode\n/workspaces/main${process.pid}\nhello bye-hello\n`);
    expect(err.text()).toBe('to-stderr\n');

    let log = '';
    await followLogs(await admin.createAccessGrant(created.metadata.id), { write: (chunk) => (log += chunk) });
    expect(log).toContain('post-create ran');

    await admin.delete('Environment', created.metadata.id);
    for (let attempt = 0; attempt < 600; attempt++) {
      const gone = await admin.get('Environment', created.metadata.id).then(
        () => false,
        () => true,
      );
      if (gone) break;
      await sleep(100);
    }
    await expect(admin.get('Environment', created.metadata.id)).rejects.toThrow();
    expect(await runtime.list()).toEqual([]);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(runnerDir))).toEqual([]);
  });
});
