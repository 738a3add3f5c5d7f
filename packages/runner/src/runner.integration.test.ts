// The main job end to end in one process: control plane (app + PGlite + controllers), startRunner with
// the Linux backend, a repository with devcontainer.json on a git server and its image in a registry.
// An environment goes to Running; exec through the access API with a server-issued token runs as
// remoteUser in the workspace folder with containerEnv/remoteEnv, streams stdout/stderr apart and passes
// the exit code through; the lifecycle log is served; delete leaves nothing.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images.
import { Writable } from 'node:stream';
import { getCondition } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, deleteEnvironment, startHarness, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment, followLogs } from './access/index.js';
import { readMountInfo } from './linux/index.js';

/** Own slot range, apart from `warren up` (0...), the other suites (1000..13000) and the network tests (15000...). */
const SLOT_OFFSET = 13_000 + (process.pid % 50) * 40;

function sink() {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({ write: (chunk: Buffer, _encoding, callback) => void (chunks.push(chunk), callback()) }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

describe('warren main job in one process (server + runner with the Linux backend)', () => {
  let harness: HarnessWithFixtures;

  beforeAll(async () => {
    harness = await startHarness({ name: 'main', fixtures: true, config: { slotOffset: SLOT_OFFSET } });
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('creates an environment from a repository, execs in it through the access API, and deletes it', async () => {
    const { fixtures, admin, runner, runtime, runnerDir } = harness;
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
    const running = await waitForPhase(admin, created.metadata.id, 'Running');
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

    await deleteEnvironment(admin, created.metadata.id);
    await expect(admin.get('Environment', created.metadata.id)).rejects.toThrow();
    expect(await runtime!.list()).toEqual([]);
    // Only the runner's own lxcfs (docs/design/0013) stays mounted in its data dir while it runs.
    const lxcfsRoot = `${runnerDir}/lxcfs/root`;
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(runnerDir) && entry.mountPoint !== lxcfsRoot)).toEqual([]);
  });
});
