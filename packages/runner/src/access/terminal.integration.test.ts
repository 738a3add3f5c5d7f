// Terminal API and activity tracking end to end in one process: control plane (startServer with fast
// controllers), startRunner with the Linux backend, real environments from a git server and a registry.
// Terminal: a login shell as remoteUser in the workspace folder, input/output, resize seen by `stty size`,
// reconnect with ≥ 256 KiB of scrollback replayed, other users' and expired tokens refused.
// Activity: with a 4 s inactivity timeout an idle environment is stopped; one used through the terminal and
// exec every second stays Running.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images.
import { PassThrough, Writable } from 'node:stream';
import type { AccessGrant, WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, deleteEnvironment, startHarness, waitForPhase } from '../../../../e2e/harness/index.js';
import { execInEnvironment } from './client.js';
import { openTerminal } from './terminal-client.js';

/** Own slot range, apart from the other suites (0..15999, see runner.integration.test.ts) and other helpers. */
const SLOT_OFFSET = 16_000 + (process.pid % 30) * 10;
const INACTIVITY_SECONDS = 4;

function sink() {
  const chunks: Buffer[] = [];
  const waiters: Array<() => void> = [];
  const bytes = () => Buffer.concat(chunks);
  return {
    stream: new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        chunks.push(chunk);
        for (const waiter of waiters.splice(0)) waiter();
        callback();
      },
    }),
    bytes,
    text: () => bytes().toString('utf8'),
    /** Resolves once the output matches; the test timeout bounds the wait. */
    async until(pattern: RegExp): Promise<RegExpExecArray> {
      for (;;) {
        const match = pattern.exec(bytes().toString('utf8'));
        if (match) return match;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

describe('terminal API and activity on a real runner', { timeout: 300_000 }, () => {
  let harness: HarnessWithFixtures;
  let admin: WarrenClient;
  let alice: WarrenClient;
  let bob: WarrenClient;
  let aliceId: string;
  let bobId: string;

  const phaseOf = (id: string, phase: 'Running' | 'Stopped') => waitForPhase(admin, id, phase);
  const deleteAndWait = (id: string) => deleteEnvironment(admin, id).catch(() => {});

  beforeAll(async () => {
    harness = await startHarness({
      name: 'terminal',
      fixtures: true,
      app: { keepaliveMinIntervalSeconds: 1 },
      config: { slotOffset: SLOT_OFFSET },
      runner: { activityIntervalMs: 1_000 },
    });
    admin = harness.admin;
    const [aliceUser, bobUser] = [await harness.controlPlane.createUser('alice'), await harness.controlPlane.createUser('bob')];
    [alice, bob] = [aliceUser.client, bobUser.client];
    [aliceId, bobId] = [aliceUser.id, bobUser.id];
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('gives a login shell with resize and reconnect, and refuses other users and expired tokens', async () => {
    const { fixtures } = harness;
    const repoName = `term${process.pid}`;
    const repo = await fixtures.git.createRepo(`acme/${repoName}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const created = await alice.createEnvironment({ metadata: { name: 'term' }, spec: { source: { git: { url: repo.url } } } });
    const environmentId = created.metadata.id;
    try {
      await checkTerminal(environmentId, repoName);
    } finally {
      await deleteAndWait(environmentId);
    }
  });

  async function checkTerminal(environmentId: string, repoName: string): Promise<void> {
    await phaseOf(environmentId, 'Running');

    const stdin = new PassThrough();
    const out = sink();
    const terminal = await openTerminal(await alice.createAccessGrant('term'), { stdin, stdout: out.stream, cols: 100, rows: 30 });
    expect(terminal).toMatchObject({ resumed: false, replayBytes: 0 });
    // Computed markers, so the echo of the typed line never matches.
    stdin.write(
      'echo "who=$(id -un) dir=$(pwd) sum=$((6 * 7))"; [ "$0" = "$(getent passwd "$(id -un)" | cut -d: -f7)" ] && echo "login-$((1 + 1))"\n',
    );
    const who = await out.until(/who=(\S+) dir=(\S+) sum=42/);
    expect(who.slice(1)).toEqual(['vscode', `/workspaces/${repoName}`]);
    await out.until(/login-2/);
    stdin.write('stty size\n');
    await out.until(/30 100/);
    terminal.resize(120, 40);
    stdin.write('stty size\n');
    await out.until(/40 120/);

    stdin.write("head -c 300000 /dev/zero | tr '\\0' x; echo; echo big-$((2 + 3))\n");
    await out.until(/big-5\r?\n/);
    terminal.close();
    expect((await terminal.done).kind).toBe('detached');

    const replay = sink();
    const stdin2 = new PassThrough();
    const resumed = await openTerminal(await alice.createAccessGrant(environmentId), {
      stdin: stdin2,
      stdout: replay.stream,
      session: terminal.session,
    });
    expect(resumed).toMatchObject({ session: terminal.session, resumed: true });
    expect(resumed.replayBytes).toBeGreaterThanOrEqual(256 * 1024);
    await replay.until(/big-5/);
    expect(replay.bytes().subarray(0, resumed.replayBytes).toString('utf8')).toMatch(/x{4096}/);
    stdin2.write('echo "still-$((3 + 4))"\n');
    await replay.until(/still-7/);

    // User B: no grant for A's environment, by name or by id.
    await expect(bob.createAccessGrant('term')).rejects.toMatchObject({ code: 404 });
    await expect(bob.createAccessGrant(environmentId)).rejects.toMatchObject({ code: 404 });
    // A server-signed token of B for another environment does not open A's; nor does a token naming B take A's session.
    const { runner } = harness;
    const grantFor = async (
      userId: string,
      tokenEnvironment: string,
      options: { ttlSeconds?: number; now?: Date } = {},
    ): Promise<AccessGrant> => {
      const signed = await harness.controlPlane.signToken({ runnerId: runner.runnerId, userId, environmentId: tokenEnvironment }, options);
      return { ...signed, endpoint: runner.accessUrl, environmentId };
    };
    await expect(openTerminal(await grantFor(bobId, 'some-environment-of-bob'), { stdout: sink().stream })).rejects.toMatchObject({
      code: 403,
    });
    await expect(
      openTerminal(await grantFor(bobId, environmentId), { stdout: sink().stream, session: terminal.session }),
    ).rejects.toMatchObject({
      code: 404,
      reason: 'TerminalSessionNotFound',
    });
    // Expired (signed two minutes ago with a one-second lifetime).
    await expect(
      openTerminal(await grantFor(aliceId, environmentId, { ttlSeconds: 1, now: new Date(Date.now() - 120_000) }), {
        stdout: sink().stream,
      }),
    ).rejects.toMatchObject({ code: 401 });
    // Not even a reconnect works with an expired token.
    await expect(
      openTerminal(await grantFor(aliceId, environmentId, { ttlSeconds: 1, now: new Date(Date.now() - 120_000) }), {
        stdout: sink().stream,
        session: terminal.session,
      }),
    ).rejects.toMatchObject({ code: 401 });

    stdin2.write('exit 4\n');
    expect(await resumed.done).toEqual({ kind: 'exit', code: 4 });
  }

  it('stops an idle environment after its inactivity timeout and keeps an active one running', async () => {
    const { fixtures } = harness;
    const repo = await fixtures.git.createRepo(`acme/activity${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.busybox}" }`,
    });
    const spec = { source: { git: { url: repo.url } }, timeouts: { inactivitySeconds: INACTIVITY_SECONDS } };
    const idle = await alice.createEnvironment({ metadata: { name: 'idle' }, spec });
    const busy = await alice.createEnvironment({ metadata: { name: 'busy' }, spec });
    const stdin = new PassThrough();
    const out = sink();
    try {
      await phaseOf(busy.metadata.id, 'Running');
      const terminal = await openTerminal(await alice.createAccessGrant(busy.metadata.id), { stdin, stdout: out.stream });
      const grant = await alice.createAccessGrant(busy.metadata.id);
      let tick = 0;
      const useBusy = async () => {
        tick++;
        // Terminal input on odd seconds, an exec on even ones: both count as activity.
        if (tick % 2) stdin.write(`echo tick-$((${tick} * 1))\n`);
        else await execInEnvironment(grant, ['true'], { stdout: sink().stream, stderr: sink().stream });
        await sleep(1_000);
      };

      // Until the idle one has been stopped for inactivity, use the busy one every second.
      let idleNow = await admin.get('Environment', idle.metadata.id);
      while (idleNow.spec.desiredPhase === 'Running') {
        expect(tick).toBeLessThan(240);
        await useBusy();
        idleNow = await admin.get('Environment', idle.metadata.id);
      }
      expect(idleNow.status.conditions.find((condition) => condition.type === 'StoppedForInactivity')?.status).toBe('True');
      await phaseOf(idle.metadata.id, 'Stopped');

      // Keep using the busy one for two more timeouts: it stays Running, and its lastActivityTime moves on.
      const before = (await admin.get('Environment', busy.metadata.id)).status.lastActivityTime;
      expect(before).toBeDefined();
      const until = tick + 2 * INACTIVITY_SECONDS + 2;
      while (tick < until) {
        await useBusy();
        const current = await admin.get('Environment', busy.metadata.id);
        expect(current.spec.desiredPhase).toBe('Running');
        expect(current.status.phase).toBe('Running');
      }
      const after = (await admin.get('Environment', busy.metadata.id)).status.lastActivityTime;
      expect(Date.parse(after!)).toBeGreaterThan(Date.parse(before!));
      await out.until(/tick-\d+\r?\n/);
      terminal.terminate();
      await terminal.done;
    } finally {
      await Promise.all([deleteAndWait(idle.metadata.id), deleteAndWait(busy.metadata.id)]);
    }
  });
});
