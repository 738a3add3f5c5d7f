// Memory limits and OOM end to end (docs/design/0010-requests-and-limits.md "Memory and OOM"): server + runner + runc
// on this host's real cgroups. A process that allocates past its environment's 64 MiB limit is killed by the kernel
// inside that environment only: the container's init and the runner live on, the environment stays Running, and
// its OOMKilled condition names the process. The runner runs with a negative oom_score_adj (as `warren runner` sets
// it) while the container's processes, exec'd ones included, are at 0.
// Needs root, runc, a memory cgroup controller and the e2e fixtures.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { getCondition } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, deleteEnvironment, startHarness, waitFor, waitForPhase } from '../../../e2e/harness/index.js';
import { execInEnvironment } from './access/index.js';
import { CgroupManager, KERNEL_OBJECT_PREFIX } from './linux/index.js';

/** Own slot range, apart from the other suites (see their SLOT_OFFSETs): 2 slots in [15_880, 16_000). */
const SLOT_OFFSET = 15_880 + (process.pid % 30) * 4;
const NAME = 'oom';
const MiB = 1024 * 1024;
/** What `warren runner` sets by default (cli/src/commands/oom-score.ts). */
const RUNNER_OOM_SCORE_ADJ = -900;

const cgroups = await CgroupManager.detect({});

/** Runs `argv` in the environment; its exit code and output. */
async function run(harness: HarnessWithFixtures, id: string, argv: string[]): Promise<{ code: number; output: string }> {
  const chunks: Buffer[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (chunks.push(chunk), callback()) });
  const code = await execInEnvironment(await harness.admin.createAccessGrant(id), argv, { stdout: sink, stderr: sink });
  return { code, output: Buffer.concat(chunks).toString('utf8') };
}

describe('an OOM inside an environment', () => {
  let harness: HarnessWithFixtures;
  let ownScore: string;
  /** Whether this host lets root lower oom_score_adj (CAP_SYS_RESOURCE; some sandboxes drop it). */
  let protectedRunner = false;

  beforeAll(async () => {
    // The runner runs in this process: protect it as `warren runner` does, before it starts any container.
    ownScore = (await readFile('/proc/self/oom_score_adj', 'utf8')).trim();
    protectedRunner = await writeFile('/proc/self/oom_score_adj', `${RUNNER_OOM_SCORE_ADJ}\n`).then(
      () => true,
      (error: unknown) => {
        console.warn(`oom.integration.test.ts: the runner's oom_score_adj stays ${ownScore} (${String(error)}: no CAP_SYS_RESOURCE here)`);
        return false;
      },
    );
    harness = await startHarness({ name: NAME, fixtures: true, config: { slotOffset: SLOT_OFFSET, maxEnvironments: 2 } });
  });

  afterAll(async () => {
    await harness?.dispose();
    if (ownScore !== undefined) await writeFile('/proc/self/oom_score_adj', `${ownScore}\n`);
  });

  it('kills the process inside, keeps init and the runner, and names it in the OOMKilled condition', async () => {
    const { fixtures, admin } = harness;
    await admin.createEnvironmentClass({
      metadata: { name: 'small-memory' },
      spec: { cpuMillicores: 1000, memoryBytes: 64 * MiB, swapBytes: 0, pids: 256 },
    });
    const repo = await fixtures.git.createRepo(`acme/oom${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.base}" }`,
    });
    const created = await admin.createEnvironment({
      metadata: { name: 'oom' },
      spec: { className: 'small-memory', source: { git: { url: repo.url } } },
    });
    const id = created.metadata.id;
    const running = await waitForPhase(admin, id, 'Running');
    expect(getCondition(running.status.conditions, 'OOMKilled')).toBeUndefined();

    // The runner is protected, its container's processes are not: init (pid 1), an exec'd shell, and a process
    // started by `runc exec` from this -900 process (the exec fallback path).
    expect(Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim())).toBe(
      protectedRunner ? RUNNER_OOM_SCORE_ADJ : Number(ownScore),
    );
    const scores = await run(harness, id, ['sh', '-c', 'cat /proc/1/oom_score_adj /proc/self/oom_score_adj']);
    expect(scores).toEqual({ code: 0, output: '0\n0\n' });
    const viaRunc = await new Promise<string>((resolve, reject) => {
      const child = spawn('runc', [
        '--root',
        `/run/warren/runc-${NAME}-test-${process.pid}`,
        'exec',
        `${KERNEL_OBJECT_PREFIX}-${id}`,
        'cat',
        '/proc/self/oom_score_adj',
      ]);
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.on('error', reject);
      child.on('close', () => resolve(output));
    });
    // runc applies the config's oomScoreAdj to exec'd processes too, so they do not inherit the runner's score (a
    // check that can only fail where the runner could lower its own score, see protectedRunner).
    expect(viaRunc).toBe('0\n');

    // tail keeps a line without a newline in memory: 200 MiB of zeros cannot fit under 64 MiB.
    const hog = await run(harness, id, ['sh', '-c', 'head -c 200M /dev/zero | tail; echo "exit $?"']);
    expect(hog.output).toMatch(/exit 137/);
    // Counted in the environment's own memory cgroup (the harness's parent `warren-<name>-<pid>`).
    const group = new CgroupManager({ version: cgroups.version, root: cgroups.root, parent: `warren-${NAME}-${process.pid}` });
    expect((await group.stats(id)).oomKills).toBe(1);

    const killed = await waitFor(
      'the OOMKilled condition',
      async () => {
        const current = await admin.get('Environment', id);
        return getCondition(current.status.conditions, 'OOMKilled')?.status === 'True' ? current : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const condition = getCondition(killed.status.conditions, 'OOMKilled')!;
    console.log(`OOMKilled: ${condition.message}`);
    expect(condition.reason).toBe('OOMKilled');
    expect(condition.message).toMatch(
      /^The OOM killer killed (tail \(host pid \d+\)|a process) when the environment reached its memory limit of 64 MiB; 1 process was killed/,
    );
    // This host's kernel log is readable by the root runner, so the process is named.
    expect(condition.message).toContain('tail (host pid');

    // Only the hog died: the environment, its init and exec still work; the runner still reconciles.
    expect(killed.status.phase).toBe('Running');
    expect(getCondition(killed.status.conditions, 'Running')?.status).toBe('True');
    expect(await run(harness, id, ['sh', '-c', 'test -d /proc/1 && echo alive'])).toEqual({ code: 0, output: 'alive\n' });

    await deleteEnvironment(admin, id);
  });
});
