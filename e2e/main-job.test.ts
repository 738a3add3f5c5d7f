// The main job through the real `warren` CLI: `warren up` in a child process (server + runner, embedded
// database), then `warren env create <git-url> --wait`, exec, logs, stop, start, delete, against a real
// registry (reached as a mirror of mcr.microsoft.com), a real git server, runc, overlayfs and nftables.
// Needs root and `npm run build` (npm test builds first).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTestImages } from './fixtures/images.js';
import { freePort } from './fixtures/process.js';
import { startGitServer, type TestGitServer } from './fixtures/git-server.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';

const cli = fileURLToPath(new URL('../packages/cli/bin/warren.js', import.meta.url));
const built = existsSync(fileURLToPath(new URL('../packages/cli/dist/main.js', import.meta.url)));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

describe.runIf(built)('warren CLI main job', { timeout: 300_000 }, () => {
  let dir: string;
  let registry: TestRegistry;
  let git: TestGitServer;
  let up: ChildProcess;
  let upLog = '';
  let repoUrl: string;
  const env: NodeJS.ProcessEnv = { ...process.env };

  let upArgs: string[] = [];
  /** Starts `warren up` and resolves once it says it is up. */
  const startUp = async (): Promise<void> => {
    upLog = '';
    up = spawn(process.execPath, [cli, ...upArgs], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`warren up did not come up:\n${upLog}`)), 60_000);
      const onData = (chunk: Buffer) => {
        upLog += chunk.toString();
        if (upLog.includes('Warren is up')) {
          clearTimeout(timer);
          resolve();
        }
      };
      up.stdout!.on('data', onData);
      up.stderr!.on('data', onData);
      up.once('exit', (code) => reject(new Error(`warren up exited with ${code}:\n${upLog}`)));
    });
  };

  const warren = (args: string[], input?: string): Promise<CliResult> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(input);
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-e2e-'));
    await chmod(dir, 0o755); // environments (unprivileged host uids) must be able to enter the data dir
    registry = await startRegistry();
    await ensureTestImages(registry);
    git = await startGitServer();
    const repo = await git.createRepo('hello', {
      '.devcontainer/devcontainer.json': JSON.stringify({
        image: 'mcr.microsoft.com/devcontainers/base:bookworm',
        containerEnv: { FROM_CONTAINER_ENV: 'c1' },
        remoteEnv: { FROM_REMOTE_ENV: 'r1' },
        postCreateCommand: 'echo post-create-ran >> /tmp/post-create.txt',
        postStartCommand: ['sh', '-c', 'echo post-start-ran; date >> /tmp/post-start.txt'],
      }),
      'README.md': '# hello\n',
    });
    repoUrl = repo.url;
    const port = await freePort();
    const accessPort = await freePort();
    const sshPort = await freePort();
    const proxyPort = await freePort();
    env.WARREN_CONFIG = join(dir, 'cli-config.json');
    env.WARREN_LOG_LEVEL = 'warn';
    await mkdir(join(dir, 'data', 'runner'), { recursive: true });
    await writeFile(
      join(dir, 'data', 'runner', 'runner.json'),
      JSON.stringify({ mirrors: { 'mcr.microsoft.com': [registry.url] }, slotOffset: 1000 + (process.pid % 1000) }),
    );
    upArgs = [
      'up',
      '--data-dir',
      join(dir, 'data'),
      '--listen',
      `127.0.0.1:${port}`,
      '--access-listen',
      `127.0.0.1:${accessPort}`,
      '--ssh-listen',
      `127.0.0.1:${sshPort}`,
      '--proxy-listen',
      `127.0.0.1:${proxyPort}`,
    ];
    await startUp();
  });

  afterAll(async () => {
    if (process.env.WARREN_E2E_DEBUG) {
      console.log((await warren(['env', 'get', 'hello', '-o', 'yaml'])).stdout, upLog);
    }
    await warren(['env', 'delete', 'hello', '--wait', '--timeout', '120']).catch(() => undefined);
    if (up && up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((resolve) => up.once('exit', resolve));
    }
    await git?.stop();
    await registry?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('saves a CLI context with mode 0600 on first start', async () => {
    expect(upLog).toMatch(/Warren is up at http:\/\/127\.0\.0\.1:\d+/);
    expect((await stat(env.WARREN_CONFIG!)).mode & 0o777).toBe(0o600);
  });

  it('creates an environment from the repository and waits until it runs', async () => {
    const created = await warren([
      'env',
      'create',
      repoUrl,
      '--name',
      'hello',
      '--wait',
      '--timeout',
      process.env.WARREN_E2E_DEBUG ? '40' : '280',
      '-o',
      'json',
    ]);
    expect(created.stderr).toMatch(/hello: Pending|hello: Creating/);
    expect(created.code, created.stderr).toBe(0);
    const environment = JSON.parse(created.stdout) as {
      status: { phase: string; devcontainer?: { remoteUser?: string; workspaceFolder?: string } };
    };
    expect(environment.status.phase).toBe('Running');
    expect(environment.status.devcontainer?.remoteUser).toBe('vscode');
    expect(environment.status.devcontainer?.workspaceFolder).toBe('/workspaces/hello');
  });

  it('execs as remoteUser in the workspace folder with containerEnv and remoteEnv, streams separately, passes the exit code', async () => {
    const result = await warren([
      'env',
      'exec',
      'hello',
      '--',
      'sh',
      '-c',
      'echo "$(id -un) $(pwd) $FROM_CONTAINER_ENV $FROM_REMOTE_ENV"; cat README.md; echo to-stderr >&2; exit 42',
    ]);
    expect(result.code).toBe(42);
    expect(result.stdout).toBe('vscode /workspaces/hello c1 r1\n# hello\n');
    expect(result.stderr).toBe('to-stderr\n');
    const stdin = await warren(['env', 'exec', 'hello', '--', 'cat'], 'piped input');
    expect(stdin.stdout).toBe('piped input');
  });

  it('is root-capable inside without being root outside', async () => {
    const result = await warren(['env', 'exec', 'hello', '--', 'sudo', 'sh', '-c', 'id -u && useradd -m extra && id -u extra']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.split('\n')[0]).toBe('0');
  });

  it('shows lifecycle command output in env logs', async () => {
    const logs = await warren(['env', 'logs', 'hello']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('post-start-ran');
  });

  it('shows CPU, memory and tasks of the environment in env top', async () => {
    const top = await warren(['env', 'top', 'hello', '-o', 'json']);
    expect(top.code, top.stderr).toBe(0);
    const [row] = JSON.parse(top.stdout) as Array<{
      name: string;
      cpuPercent?: number;
      memoryUsageBytes?: number;
      pids?: number;
      error?: string;
    }>;
    expect(row).toMatchObject({ name: 'hello' });
    expect(row?.error).toBeUndefined();
    expect(row?.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(row?.memoryUsageBytes).toBeGreaterThan(0);
    expect(row?.pids).toBeGreaterThanOrEqual(1);
    const table = await warren(['env', 'top']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^NAME\s+CPU%/);
    expect(table.stdout).toMatch(/^hello\s+\d+\.\d\s/m);
  });

  it('keeps disk state across stop and start and runs only postStartCommand again', async () => {
    await warren(['env', 'exec', 'hello', '--', 'sh', '-c', 'echo kept > /home/vscode/state.txt']);
    const stopped = await warren(['env', 'stop', 'hello', '--wait', '-o', 'json']);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect((JSON.parse(stopped.stdout) as { status: { phase: string } }).status.phase).toBe('Stopped');
    const started = await warren(['env', 'start', 'hello', '--wait', '-o', 'json']);
    expect(started.code, started.stderr).toBe(0);
    const check = await warren([
      'env',
      'exec',
      'hello',
      '--',
      'sh',
      '-c',
      'cat /home/vscode/state.txt; wc -l < /tmp/post-create.txt; wc -l < /tmp/post-start.txt',
    ]);
    expect(check.stdout).toBe('kept\n1\n2\n');
  });

  it('lets the owner in over SSH with a registered key and the published host key (no first-use prompt)', async () => {
    const key = join(dir, 'id_ed25519');
    await new Promise((resolve, reject) => {
      const child = spawn('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'e2e', '-f', key]);
      child.on('error', reject);
      child.on('close', resolve);
    });
    const added = await warren(['ssh-key', 'add', `${key}.pub`]);
    expect(added.code, added.stderr).toBe(0);
    const result = await warren(['ssh', 'hello', '-i', key, '--', 'sh', '-c', '"echo $(id -un) $(pwd); exit 4"']);
    expect(result.stdout).toContain('vscode /workspaces/hello');
    expect(result.code, result.stderr).toBe(4);
    const config = await warren(['ssh-config', 'hello']);
    expect(config.stdout).toMatch(/Host hello\.warren/);
  });

  it('leaves environments running when the runner is killed with SIGKILL, and adopts them on restart', async () => {
    const before = await warren(['env', 'exec', 'hello', '--', 'sh', '-c', 'cut -d" " -f22 /proc/1/stat']);
    expect(before.code, before.stderr).toBe(0);
    const exited = new Promise((resolve) => up.once('exit', resolve));
    up.kill('SIGKILL');
    await exited;
    await startUp();
    const after = await warren(['env', 'exec', 'hello', '--', 'sh', '-c', 'cut -d" " -f22 /proc/1/stat; cat /home/vscode/state.txt']);
    expect(after.code, after.stderr).toBe(0);
    // Same start time of the container's init: it kept running and was adopted, not restarted.
    expect(after.stdout).toBe(`${before.stdout}kept\n`);
    const listed = await warren(['env', 'get', 'hello', '-o', 'json']);
    expect((JSON.parse(listed.stdout) as { status: { phase: string } }).status.phase).toBe('Running');
  });

  it('lists environments, runners and classes in every output format', async () => {
    const table = await warren(['env', 'list']);
    expect(table.stdout).toMatch(/^NAME\s+ID\s+PHASE/);
    expect(table.stdout).toContain('hello');
    const yaml = await warren(['runner', 'list', '-o', 'yaml']);
    expect(yaml.stdout).toContain('phase: Active');
    const images = await warren(['image', 'list', '--data-dir', join(dir, 'data')]);
    expect(images.stdout).toMatch(/mcr\.microsoft\.com\/devcontainers\/base:bookworm/);
    const kept = await warren(['image', 'prune', '--data-dir', join(dir, 'data'), '-o', 'json']);
    expect((JSON.parse(kept.stdout) as { removedImages: string[]; inUse: string[] }).removedImages).toEqual([]);
    const classes = await warren(['class', 'list', '-o', 'json']);
    expect((JSON.parse(classes.stdout) as Array<{ metadata: { name: string } }>).map((item) => item.metadata.name)).toContain('default');
  });

  it('prints one error line and exits non-zero for bad input', async () => {
    const missing = await warren(['env', 'get', 'no-such-env']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^error: .*not found/);
    const badUrl = await warren(['env', 'create', 'ext::sh -c id']);
    expect(badUrl.code).toBe(1);
    expect(badUrl.stderr).toMatch(/^error: invalid git URL/);
    const duplicate = await warren(['env', 'create', repoUrl, '--name', 'hello']);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toMatch(/^error: .*(exists|taken)/i);
  });

  it('deletes the environment and every trace of it', async () => {
    const deleted = await warren(['env', 'delete', 'hello', '--wait']);
    expect(deleted.code, deleted.stderr).toBe(0);
    const after = await warren(['env', 'get', 'hello']);
    expect(after.code).toBe(1);
    const runtimeList = await new Promise<string>((resolve) => {
      const child = spawn('runc', ['--root', '/run/warren/runc', 'list', '-q']);
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.on('close', () => resolve(out));
    });
    expect(runtimeList).not.toMatch(/hello/);
    const pruned = await warren(['image', 'prune', '--data-dir', join(dir, 'data'), '-o', 'json']);
    expect((JSON.parse(pruned.stdout) as { removedImages: string[] }).removedImages.join(' ')).toMatch(/devcontainers\/base:bookworm/);
    const images = await warren(['image', 'list', '--data-dir', join(dir, 'data'), '-o', 'json']);
    expect(JSON.parse(images.stdout)).toEqual([]);
  });
});

describe.skipIf(built)('warren CLI main job (not built)', () => {
  it('needs npm run build first', () => {
    console.warn('skipping the CLI main job: packages/cli/dist is missing; run "npm run build" (npm test does)');
  });
});
