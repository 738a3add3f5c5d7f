// The exec agent inside real environment containers (OCI runtime chosen as in production: crun when its self-test
// passes, else runc): exec semantics through the agent, its socket closed to non-root users, zombie reaping by
// the init, the image command under the init (overrideCommand false) with SIGTERM forwarded on stop, containers
// started without the agent (exec falls back to the runtime), and adoption by a restarted runner.
// Needs root, crun or runc, ip, cc with a static libc, git, docker-registry, skopeo, docker (for the one build)
// and the cached test images (scripts/test-images.sh).
import { getCondition } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fixtures } from '../../../../e2e/harness/index.js';
import { collect } from '../linux/testing.js';
import type { LinuxBackend } from './linux-backend.js';
import { type BackendHost, execOutput as run, makeEnvironment, makeReconciler, next, startBackendHost } from './testing.js';

// One environment at a time (each test deletes its own), so one slot: 16350-16351 lies between the SSH gateway's
// range (16100-16349) and the port proxy's (16352-16381).
const SLOT_OFFSET = 16_350 + (process.pid % 2);

describe('LinuxBackend with the exec agent', () => {
  let host: BackendHost;
  let fixtures: Fixtures;
  const signal = new AbortController().signal;

  const makeBackend = (execAgent = true) => host.createBackend({ stopGraceSeconds: 5, slotOffset: SLOT_OFFSET, execAgent });
  /** The exec'd process's parent: 1 under the agent (the container's init), 0 under `runc/crun exec` (outside the pid namespace). */
  const parentOf = async (backend: LinuxBackend, id: string) => (await run(backend, id, ['sh', '-c', 'echo $PPID'])).stdout.trim();

  beforeAll(async () => {
    host = await startBackendHost({ name: 'agent', runtime: 'auto' });
    fixtures = host.fixtures;
    console.log(`exec agent integration test: OCI runtime ${host.runtime.name}`);
  });

  afterAll(async () => {
    await host?.dispose();
  });

  it('execs through the agent after a restart of a container that started without it, with exec semantics unchanged', async () => {
    const repo = await fixtures.git.createRepo(`acme/agent${process.pid}`, {
      '.devcontainer/devcontainer.json': JSON.stringify({
        image: fixtures.images.base,
        remoteUser: 'vscode',
        containerEnv: { FROM_CONTAINER_ENV: 'c1' },
      }),
      'README.md': '# agent\n',
    });
    // Started by a runner without the agent (as before this change): pid 1 is the keep-alive shell, exec via the runtime.
    const legacy = await makeBackend(false);
    const created = await makeReconciler(legacy, 5).reconcile(makeEnvironment('ag', repo.url), signal);
    expect(created.status.phase).toBe('Running');
    const id = created.metadata.id;
    expect(await parentOf(legacy, id)).toBe('0');

    // A runner with the agent adopts it: execs fall back to the runtime until the container is restarted.
    const backend = await makeBackend();
    const reconciler = makeReconciler(backend, 5);
    expect(await parentOf(backend, id)).toBe('0');
    const stopped = await reconciler.reconcile(next(created, 'Stopped'), signal);
    expect(stopped.status.phase).toBe('Stopped');
    await expect(backend.exec(id, { argv: ['true'], tty: false }, silentLogger)).rejects.toMatchObject({ reason: 'EnvironmentNotRunning' });
    const running = await reconciler.reconcile(next(stopped, 'Running'), signal);
    expect(running.status.phase).toBe('Running');
    expect(await parentOf(backend, id)).toBe('1');
    expect((await run(backend, id, ['cat', '/proc/1/cmdline'])).stdout).toBe('/dev/.warren/init\0');

    // User, working directory, environment; stdout and stderr apart.
    expect(
      await run(backend, id, ['sh', '-c', 'id -un; id -Gn; pwd; echo "$FROM_CONTAINER_ENV $EXTRA $HOME"; echo err >&2'], {
        env: ['EXTRA=x1'],
      }),
    ).toEqual({
      code: 0,
      stdout: `vscode\n${(await run(legacy, id, ['id', '-Gn'])).stdout}/workspaces/agent${process.pid}\nc1 x1 /home/vscode\n`,
      stderr: 'err\n',
    });
    expect((await run(backend, id, ['id', '-u'], { user: 'root', cwd: '/tmp' })).stdout).toBe('0\n');
    expect((await run(backend, id, ['sudo', '-n', 'id', '-u'])).stdout).toBe('0\n');
    // A non-root exec has no capabilities; root has Docker's set.
    expect((await run(backend, id, ['grep', '^CapEff', '/proc/self/status'])).stdout).toBe('CapEff:\t0000000000000000\n');
    expect((await run(backend, id, ['grep', '^CapEff', '/proc/self/status'], { user: 'root' })).stdout).toBe('CapEff:\t00000000a80425fb\n');
    // stdin, exit codes, signals, a command that does not exist.
    expect(await run(backend, id, ['sh', '-c', 'tr a-z A-Z; exit 42'], { input: 'piped through\n' })).toEqual({
      code: 42,
      stdout: 'PIPED THROUGH\n',
      stderr: '',
    });
    expect((await run(backend, id, ['sh', '-c', 'kill -TERM $$'])).code).toBe(143);
    expect(await run(backend, id, ['no-such-command'])).toEqual({
      code: 127,
      stdout: '',
      stderr: 'warren: exec no-such-command: No such file or directory\n',
    });
    expect((await run(backend, id, ['pwd'], { cwd: '/no/such/dir' })).code).toBe(126);

    // kill() ends the process (and its group).
    const sleeper = await backend.exec(id, { argv: ['sh', '-c', 'sleep 300 & echo $!; wait'], tty: false }, silentLogger);
    const sleeperOut = collect();
    sleeper.stdout.pipe(sleeperOut.stream);
    sleeper.stderr?.resume();
    sleeper.stdin.end();
    const deadline = Date.now() + 5_000;
    while (!sleeperOut.text().endsWith('\n') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    const child = sleeperOut.text().trim();
    sleeper.kill();
    expect(await sleeper.exit).toBe(143);
    expect((await run(backend, id, ['sh', '-c', `test -d /proc/${child} && cat /proc/${child}/stat || echo gone`])).stdout).toMatch(
      /^gone\n$|\) Z /,
    );

    // Only root inside reaches the agent: the directory is the container root's, mode 0700.
    expect((await run(backend, id, ['stat', '-c', '%U %a', '/dev/.warren'], { user: 'root' })).stdout).toBe('root 700\n');
    const asUser = await run(backend, id, ['curl', '-sS', '--max-time', '5', '--unix-socket', '/dev/.warren/exec.sock', 'http://agent/']);
    expect(asUser.code).toBe(7); // couldn't connect
    expect(asUser.stderr).toMatch(/Permission denied|Couldn't connect/);
    expect(
      (await run(backend, id, ['curl', '-sS', '--max-time', '5', '--unix-socket', '/proc/1/root/dev/.warren/exec.sock', 'http://agent/']))
        .code,
    ).toBe(7);
    // Root connects (the agent drops the HTTP request: curl sees an empty reply, 52, or a reset, 56) and the agent serves on.
    expect([52, 56]).toContain(
      (
        await run(backend, id, ['curl', '-sS', '--max-time', '5', '--unix-socket', '/dev/.warren/exec.sock', 'http://agent/'], {
          user: 'root',
        })
      ).code,
    );
    expect((await run(backend, id, ['true'])).code).toBe(0);
    // The init binary cannot be changed from inside, even by root.
    expect((await run(backend, id, ['sh', '-c', 'echo x > /dev/.warren/init'], { user: 'root' })).code).not.toBe(0);

    // Orphans are re-parented to the init and reaped: no zombies remain.
    expect((await run(backend, id, ['sh', '-c', '(sleep 0.2 &); (sleep 0.2 &); exit 0'])).code).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect((await run(backend, id, ['sh', '-c', 'cat /proc/[0-9]*/stat 2>/dev/null | grep -c ") Z " || true'])).stdout).toBe('0\n');

    // A runner restarted after SIGKILL (a new backend over the same host) execs through the running agent.
    const restarted = await makeBackend();
    expect((await restarted.observe(id)).container.state).toBe('running');
    expect(await parentOf(restarted, id)).toBe('1');

    expect((await makeReconciler(restarted, 5).reconcile(next(running, 'Deleted'), signal)).status.phase).toBe('Deleted');
  });

  it('runs the image command under the init as containerUser (overrideCommand false) and forwards SIGTERM on stop', async () => {
    const script =
      'echo $$ > /tmp/command-pid; trap "echo stopped-by-term > /home/vscode/term-marker; exit 0" TERM; while :; do sleep 0.1; done';
    const repo = await fixtures.git.createRepo(`acme/command${process.pid}`, {
      '.devcontainer/devcontainer.json': JSON.stringify({
        build: { dockerfile: 'Dockerfile' },
        overrideCommand: false,
        containerUser: 'vscode',
        remoteUser: 'vscode',
      }),
      '.devcontainer/Dockerfile': `FROM ${fixtures.images.base}\nCMD ["sh", "-c", ${JSON.stringify(script)}]\n`,
    });
    const backend = await makeBackend();
    const reconciler = makeReconciler(backend, 5);
    const created = await reconciler.reconcile(makeEnvironment('ag', repo.url), signal);
    expect(created.status.message).toBeUndefined();
    expect(created.status.phase).toBe('Running');
    expect(getCondition(created.status.conditions, 'Running')?.status).toBe('True');
    const id = created.metadata.id;
    const commandPid = async () => {
      for (let attempt = 0; attempt < 100; attempt++) {
        const pid = (await run(backend, id, ['cat', '/tmp/command-pid'])).stdout.trim();
        if (pid) return pid;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('the image command did not start');
    };
    const pid = await commandPid();
    expect((await run(backend, id, ['cat', '/proc/1/cmdline'])).stdout).toBe(
      '/dev/.warren/init\0--uid\x001000\0--gid\x001000\0--\0sh\0-c\0' + script + '\0',
    );
    // Its parent is the init, it runs as vscode without capabilities.
    expect((await run(backend, id, ['sh', '-c', `awk '/^(PPid|Uid|CapEff)/ {print $1, $2}' /proc/${pid}/status`])).stdout).toBe(
      'PPid: 1\nUid: 1000\nCapEff: 0000000000000000\n',
    );

    expect((await run(backend, id, ['rm', '/tmp/command-pid'], { user: 'root' })).code).toBe(0);
    // Stop: the init forwards SIGTERM; the command's trap runs and the container stops without waiting out the grace.
    const stopStarted = Date.now();
    const stopped = await reconciler.reconcile(next(created, 'Stopped'), signal);
    expect(stopped.status.phase).toBe('Stopped');
    expect(Date.now() - stopStarted).toBeLessThan(4_000);
    const restarted = await reconciler.reconcile(next(stopped, 'Running'), signal);
    expect(restarted.status.phase).toBe('Running');
    expect((await run(backend, id, ['cat', '/home/vscode/term-marker'])).stdout).toBe('stopped-by-term\n');
    expect(await commandPid()).toMatch(/^\d+$/);
    expect((await reconciler.reconcile(next(restarted, 'Deleted'), signal)).status.phase).toBe('Deleted');
  });
});
