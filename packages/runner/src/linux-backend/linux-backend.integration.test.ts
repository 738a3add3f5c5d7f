/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
// The whole environment path on the real host: git clone from a smart-HTTP server, devcontainer.json,
// image pull from a local registry, idmapped overlay rootfs, user + network namespaces, cgroups, runc,
// lifecycle commands, exec, stop/start, delete with nothing left behind.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images (scripts/test-images.sh).
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type EnvironmentStatus, getCondition } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fixtures } from '../../../../e2e/harness/index.js';
import type { EnvironmentReconciler, StepContext } from '../environment/index.js';
import { type CgroupManager, type OciRuntime, exec, readMountInfo, slotInfo } from '../linux/index.js';
import { collect } from '../linux/testing.js';
import type { LinuxBackend } from './linux-backend.js';
import { type BackendHost, execOutput, makeEnvironment, makeReconciler, next, startBackendHost } from './testing.js';

// A slot range of its own (kernel object names are host-wide): apart from `warren up` (0...) and the
// network tests (15000...), varied by pid so parallel runs rarely meet.
const SLOT_OFFSET = 1000 + (process.pid % 200) * 40;

describe('LinuxBackend on the real host', () => {
  let host: BackendHost;
  let fixtures: Fixtures;
  let dataDir: string;
  let backend: LinuxBackend;
  let reconciler: EnvironmentReconciler;
  let runtime: OciRuntime;
  let cgroups: CgroupManager;
  const signal = new AbortController().signal;
  const context: StepContext = { signal, logger: silentLogger, onProgress: () => {} };
  const statuses: EnvironmentStatus[] = [];

  const run = (id: string, argv: string[], options: { user?: string; cwd?: string } = {}) => execOutput(backend, id, argv, options);

  beforeAll(async () => {
    host = await startBackendHost({ name: 'backend' });
    ({ fixtures, dataDir, runtime, cgroups } = host);
    backend = await host.createBackend({
      stopGraceSeconds: 2,
      slotOffset: SLOT_OFFSET,
      environmentClass: async () => ({ cpuMillicores: 1000, memoryBytes: 512 * 1024 * 1024, swapBytes: 0, pids: 512 }),
    });
    reconciler = makeReconciler(backend, 2, statuses);
  });

  afterAll(async () => {
    await host?.dispose();
  });

  it('creates, execs, stops, starts and deletes an environment from a repository with devcontainer.json', async () => {
    const repo = await fixtures.git.createRepo(`acme/app${process.pid}`, {
      '.devcontainer/devcontainer.json': JSON.stringify({
        // JSONC: comments are allowed
        image: fixtures.images.base,
        containerEnv: { FROM_CONTAINER_ENV: 'c1' },
        remoteEnv: { FROM_REMOTE_ENV: 'r1-${containerEnv:FROM_CONTAINER_ENV}' },
        forwardPorts: [3000],
        postCreateCommand: 'echo created >> $HOME/post-create-count && echo post-create-output',
        postStartCommand: ['sh', '-c', 'echo started >> $HOME/post-start-count'],
      }),
      'README.md': '# app\n',
    });
    const created = await reconciler.reconcile(makeEnvironment('it', repo.url), signal);
    const id = created.metadata.id;
    expect(created.status.message).toBeUndefined();
    expect(created.status.phase).toBe('Running');
    for (const type of ['ContentReady', 'ImageReady', 'Running', 'LifecycleCommandsSucceeded']) {
      expect(getCondition(created.status.conditions, type)?.status, type).toBe('True');
    }
    expect(created.status.commit).toBe(repo.commits[repo.defaultBranch]);
    expect(created.status.devcontainer).toMatchObject({ remoteUser: 'vscode', workspaceFolder: `/workspaces/app${process.pid}` });
    expect(created.status.ports.map((port) => port.port)).toEqual([3000]);
    expect(statuses.some((status) => status.progress?.step === 'image')).toBe(true);

    const whoami = await run(id, ['id', '-un']);
    expect(whoami).toEqual({ code: 0, stdout: 'vscode\n', stderr: '' });
    expect((await run(id, ['pwd'])).stdout).toBe(`/workspaces/app${process.pid}\n`);
    expect((await run(id, ['cat', 'README.md'])).stdout).toBe('# app\n');
    const environment = (await run(id, ['env'])).stdout;
    expect(environment).toContain('FROM_CONTAINER_ENV=c1\n');
    expect(environment).toContain('FROM_REMOTE_ENV=r1-c1\n');
    expect(environment).toContain('HOME=/home/vscode\n');
    expect(await run(id, ['sh', '-c', 'echo out; echo err >&2; exit 3'])).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    // The workspace belongs to the remote user inside and can be written.
    expect(await run(id, ['sh', '-c', 'touch new-file && stat -c %U README.md'])).toMatchObject({ code: 0, stdout: 'vscode\n' });
    // Root inside via sudo, and root's files land in the environment's shifted range on the host.
    expect(await run(id, ['sudo', '-n', 'id', '-u'])).toMatchObject({ code: 0, stdout: '0\n' });
    const lifecycleLog = await readFile(backend.lifecycleLogPath(id), 'utf8');
    expect(lifecycleLog).toContain('post-create-output');
    expect(lifecycleLog).toMatch(/postCreateCommand .*exited with code 0/);

    // With a terminal: stdin and stdout are a tty of the requested size, output arrives on one stream.
    const terminal = await backend.exec(
      id,
      { argv: ['sh', '-c', 'test -t 0 && test -t 1 && echo is-a-tty; stty size; exit 4'], tty: true, cols: 100, rows: 30 },
      silentLogger,
    );
    expect(terminal.stderr).toBeUndefined();
    const screen = collect();
    terminal.stdout.pipe(screen.stream);
    expect(await terminal.exit).toBe(4);
    await new Promise((resolve) => setImmediate(resolve));
    expect(screen.text().replaceAll('\r', '')).toBe('is-a-tty\n30 100\n');
    terminal.stdin.end();

    // Something outside the workspace, in the overlay upper dir, must survive stop/start.
    expect((await run(id, ['sh', '-c', 'echo kept > /home/vscode/upper-marker'])).code).toBe(0);

    const stopped = await reconciler.reconcile(next(created, 'Stopped'), signal);
    expect(stopped.status.phase).toBe('Stopped');
    expect(await runtime.state(`warren-${id}`)).toBeUndefined();
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(dataDir))).toEqual([]);

    const restarted = await reconciler.reconcile(next(stopped, 'Running'), signal);
    expect(restarted.status.phase).toBe('Running');
    expect((await run(id, ['cat', '/home/vscode/upper-marker'])).stdout).toBe('kept\n');
    expect((await run(id, ['cat', '/home/vscode/post-create-count'])).stdout).toBe('created\n');
    expect((await run(id, ['cat', '/home/vscode/post-start-count'])).stdout).toBe('started\nstarted\n');
    expect((await run(id, ['ls', 'new-file'])).code).toBe(0);

    const slot = (await readdir(join(dataDir, 'slots'))).filter((name) => /^\d+$/.test(name)).map(Number);
    expect(slot).toHaveLength(1);
    const info = slotInfo(slot[0]! + SLOT_OFFSET);
    expect(info.slot).toBeGreaterThanOrEqual(SLOT_OFFSET);

    const deleted = await reconciler.reconcile(next(restarted, 'Deleted'), signal);
    expect(deleted.status.phase).toBe('Deleted');
    expect(
      (await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(dataDir) || entry.mountPoint.includes(info.netnsName)),
    ).toEqual([]);
    const netns = (await exec(['ip', 'netns', 'list'])).stdout;
    expect(netns.split('\n').some((line) => line.split(' ')[0] === info.netnsName)).toBe(false);
    const links = (await exec(['ip', '-o', 'link', 'show'])).stdout;
    expect(links).not.toContain(`${info.hostInterface}@`);
    expect(await cgroups.list()).toEqual([]);
    expect(await runtime.list()).toEqual([]);
    await expect(stat(join(dataDir, 'environments', id))).rejects.toThrow();
    expect(await backend.listEnvironments()).toEqual([]);
  });

  it('uses the default image for a repository without devcontainer.json', async () => {
    const repo = await fixtures.git.createRepo(`acme/plain${process.pid}`, { 'hello.txt': 'hi\n' });
    const created = await reconciler.reconcile(makeEnvironment('it', repo.url), signal);
    expect(created.status.phase).toBe('Running');
    expect(created.status.devcontainer?.image).toBe(fixtures.images.busybox);
    expect(created.status.devcontainer?.remoteUser).toBe('root');
    expect(await run(created.metadata.id, ['cat', 'hello.txt'])).toEqual({ code: 0, stdout: 'hi\n', stderr: '' });
    const deleted = await reconciler.reconcile(next(created, 'Deleted'), signal);
    expect(deleted.status.phase).toBe('Deleted');
  });

  it('adopts a running environment after a runner restart and removes it as an orphan when the server forgot it', async () => {
    const repo = await fixtures.git.createRepo(`acme/adopt${process.pid}`, { 'hello.txt': 'hi\n' });
    const running = await reconciler.reconcile(makeEnvironment('it', repo.url), signal);
    const id = running.metadata.id;
    expect(running.status.phase).toBe('Running');

    // A new backend and reconciler over the same host stand for a runner restarted after SIGKILL:
    // everything is derived from the host, so nothing is redone and nothing is written.
    const restartedBackend = await host.createBackend({ slotOffset: SLOT_OFFSET });
    const writes: EnvironmentStatus[] = [];
    const restarted = makeReconciler(restartedBackend, 2, writes);
    const observed = await restartedBackend.observe(id);
    expect(observed.container.state).toBe('running');
    expect(observed.lifecycle.postStartDoneFor).toBe(observed.container.startId);
    expect((await restarted.reconcile(running, signal)).status.phase).toBe('Running');
    expect(writes).toEqual([]);
    const session = await restartedBackend.exec(id, { argv: ['cat', 'hello.txt'], tty: false }, silentLogger);
    session.stdin.end();
    const out = collect();
    session.stdout.pipe(out.stream);
    expect(await session.exit).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(out.text()).toBe('hi\n');

    // The server no longer lists it: the restarted runner removes every trace.
    expect(await restartedBackend.cleanupOrphans(new Set(), context)).toContain(id);
    expect(await runtime.list()).toEqual([]);
    expect(await cgroups.list()).toEqual([]);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.startsWith(dataDir))).toEqual([]);
    expect(await restartedBackend.listEnvironments()).toEqual([]);
  });

  it('builds a Dockerfile config through the builder backend and runs the built image', async () => {
    const repo = await fixtures.git.createRepo(`acme/built${process.pid}`, {
      '.devcontainer/devcontainer.json': JSON.stringify({
        build: { dockerfile: 'Dockerfile' },
        remoteUser: 'vscode',
        postCreateCommand: 'cat /built-marker',
      }),
      '.devcontainer/Dockerfile': `FROM ${fixtures.images.base}\nRUN echo built-by-dockerfile > /built-marker\n`,
    });
    const created = await reconciler.reconcile(makeEnvironment('it', repo.url), signal);
    expect(created.status.message).toBeUndefined();
    expect(created.status.phase).toBe('Running');
    expect(created.status.devcontainer?.image).toMatch(/^warren-build\/[0-9a-f]{64}:latest$/);
    expect(getCondition(created.status.conditions, 'LifecycleCommandsSucceeded')?.status).toBe('True');
    expect(await run(created.metadata.id, ['cat', '/built-marker'])).toEqual({ code: 0, stdout: 'built-by-dockerfile\n', stderr: '' });
    expect(await run(created.metadata.id, ['id', '-un'])).toMatchObject({ stdout: 'vscode\n' });
    const log = await readFile(backend.lifecycleLogPath(created.metadata.id), 'utf8');
    expect(log).toContain('=== image build of .devcontainer/devcontainer.json ===');
    expect(log).toContain('built-by-dockerfile');
    expect((await reconciler.reconcile(next(created, 'Deleted'), signal)).status.phase).toBe('Deleted');
  });

  it('fails with ContentReady=False RepositoryNotFound for a repository that does not exist', async () => {
    const failed = await reconciler.reconcile(makeEnvironment('it', `${fixtures.git.baseUrl}/acme/missing.git`), signal);
    expect(failed.status.phase).toBe('Failed');
    expect(getCondition(failed.status.conditions, 'ContentReady')).toMatchObject({ status: 'False', reason: 'RepositoryNotFound' });
    const deleted = await reconciler.reconcile(next(failed, 'Deleted'), signal);
    expect(deleted.status.phase).toBe('Deleted');
  });

  it('fails with the location for a devcontainer.json that is not valid JSONC', async () => {
    const repo = await fixtures.git.createRepo(`acme/broken${process.pid}`, { '.devcontainer.json': '{\n  "image": \n}\n' });
    const failed = await reconciler.reconcile(makeEnvironment('it', repo.url), signal);
    expect(failed.status.phase).toBe('Failed');
    const condition = getCondition(failed.status.conditions, 'DevcontainerSupported');
    expect(condition).toMatchObject({ status: 'False', reason: 'InvalidDevcontainerConfig' });
    expect(condition?.message).toMatch(/\.devcontainer\.json:3:1/);
    await reconciler.reconcile(next(failed, 'Deleted'), signal);
  });
});
