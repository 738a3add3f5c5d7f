// Clones with the real git from local repositories (file:// URLs) and tiny HTTP servers.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from './exec.js';
import {
  GitCommandError,
  InvalidGitUrlError,
  RefNotFoundError,
  RepositoryAuthRequiredError,
  RepositoryNotFoundError,
  RepositoryUnreachableError,
  cloneRepository,
  type CloneProgress,
} from './git.js';

let root: string;
let sourceDir: string;
let sourceUrl: string;
const commits: Record<string, string> = {};

const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
async function git(args: string[], cwd: string): Promise<string> {
  const result = await exec(['git', '-c', 'user.name=Test', '-c', 'user.email=test@example.com', ...args], { cwd, env: gitEnv });
  return result.stdout.trim();
}

async function commitFile(name: string, content: string): Promise<string> {
  await writeFile(path.join(sourceDir, name), content);
  await git(['add', name], sourceDir);
  await git(['commit', '-q', '-m', `add ${name}`], sourceDir);
  return git(['rev-parse', 'HEAD'], sourceDir);
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'warren-git-'));
  sourceDir = path.join(root, 'source');
  await mkdir(sourceDir);
  await git(['init', '-q', '-b', 'main'], sourceDir);
  commits.first = await commitFile('first.txt', 'first');
  commits.tagged = await commitFile('tagged.txt', 'tagged');
  await git(['tag', '-a', 'v1.0', '-m', 'release'], sourceDir);
  commits.main = await commitFile('main.txt', 'main');
  await git(['checkout', '-q', '-b', 'feature'], sourceDir);
  commits.feature = await commitFile('feature.txt', 'feature');
  await git(['checkout', '-q', '-b', 'pull-1'], sourceDir);
  commits.pull = await commitFile('pull.txt', 'pull');
  await git(['update-ref', 'refs/pull/1/head', 'HEAD'], sourceDir);
  await git(['checkout', '-q', '-b', 'gone', 'main'], sourceDir);
  commits.unreachable = await commitFile('gone.txt', 'gone');
  await git(['checkout', '-q', 'main'], sourceDir);
  await git(['branch', '-q', '-D', 'pull-1', 'gone'], sourceDir);
  sourceUrl = `file://${sourceDir}`;
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let counter = 0;
function target(): string {
  counter++;
  return path.join(root, `clones-${counter}`, 'workspace');
}

async function expectNothingLeft(targetDir: string): Promise<void> {
  const entries = await readdir(path.dirname(targetDir)).catch(() => []);
  expect(entries).toEqual([]);
}

async function head(directory: string): Promise<string> {
  return git(['rev-parse', 'HEAD'], directory);
}

describe('cloneRepository', () => {
  it('clones the default branch and reports progress', async () => {
    const targetDir = target();
    const progress: CloneProgress[] = [];
    const result = await cloneRepository({ url: sourceUrl, targetDir, allowFileUrls: true, onProgress: (p) => progress.push(p) });
    expect(result).toEqual({ commit: commits.main, refKind: 'default' });
    expect(await head(targetDir)).toBe(commits.main);
    expect(await readFile(path.join(targetDir, 'main.txt'), 'utf8')).toBe('main');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.some((p) => p.line.startsWith('Cloning into'))).toBe(true);
    expect(await readdir(path.dirname(targetDir))).toEqual(['workspace']);
  });

  it('checks out a branch as a local branch', async () => {
    const targetDir = target();
    expect(await cloneRepository({ url: sourceUrl, ref: 'feature', targetDir, allowFileUrls: true })).toEqual({
      commit: commits.feature,
      refKind: 'branch',
    });
    expect(await git(['symbolic-ref', '--short', 'HEAD'], targetDir)).toBe('feature');
  });

  it('checks out a tag (annotated: the commit it points to)', async () => {
    const targetDir = target();
    expect(await cloneRepository({ url: sourceUrl, ref: 'v1.0', targetDir, allowFileUrls: true })).toEqual({
      commit: commits.tagged,
      refKind: 'tag',
    });
  });

  it('checks out a full and an abbreviated commit sha that no ref points to', async () => {
    const full = target();
    expect(await cloneRepository({ url: sourceUrl, ref: commits.first!, targetDir: full, allowFileUrls: true })).toEqual({
      commit: commits.first,
      refKind: 'commit',
    });
    expect(await readdir(full)).not.toContain('main.txt');
    const short = target();
    expect(
      await cloneRepository({ url: sourceUrl, ref: commits.first!.slice(0, 8).toUpperCase(), targetDir: short, allowFileUrls: true }),
    ).toEqual({
      commit: commits.first,
      refKind: 'commit',
    });
  });

  it('checks out a ref outside heads and tags (a pull request head)', async () => {
    const targetDir = target();
    expect(await cloneRepository({ url: sourceUrl, ref: 'refs/pull/1/head', targetDir, allowFileUrls: true })).toEqual({
      commit: commits.pull,
      refKind: 'ref',
    });
    expect(await readFile(path.join(targetDir, 'pull.txt'), 'utf8')).toBe('pull');
  });

  it('fetches a full sha that no branch or tag contains (protocol v2 serves any object)', async () => {
    const targetDir = target();
    expect(await cloneRepository({ url: sourceUrl, ref: commits.unreachable!, targetDir, allowFileUrls: true })).toEqual({
      commit: commits.unreachable,
      refKind: 'commit',
    });
    expect(await readFile(path.join(targetDir, 'gone.txt'), 'utf8')).toBe('gone');
  });

  it('clones into an existing empty directory but not a non-empty one', async () => {
    const targetDir = target();
    await mkdir(targetDir, { recursive: true });
    await cloneRepository({ url: sourceUrl, targetDir, allowFileUrls: true });
    expect(await head(targetDir)).toBe(commits.main);
    await expect(cloneRepository({ url: sourceUrl, targetDir, allowFileUrls: true })).rejects.toThrow(GitCommandError);
    await expect(cloneRepository({ url: sourceUrl, targetDir, allowFileUrls: true })).rejects.toThrow(/exists and is not empty/);
  });

  it('reports a missing ref with the branches that exist, leaving nothing behind', async () => {
    const targetDir = target();
    const clone = cloneRepository({ url: sourceUrl, ref: 'nope', targetDir, allowFileUrls: true });
    await expect(clone).rejects.toBeInstanceOf(RefNotFoundError);
    await expect(clone).rejects.toThrow(/ref "nope" is not a branch, tag or commit .*its branches are: feature, main/);
    await expectNothingLeft(targetDir);
  });

  it('reports an unknown commit sha as RefNotFound, leaving nothing behind', async () => {
    for (const ref of ['0123456789abcdef0123456789abcdef01234567', 'deadbeef']) {
      const targetDir = target();
      const clone = cloneRepository({ url: sourceUrl, ref, targetDir, allowFileUrls: true });
      await expect(clone).rejects.toBeInstanceOf(RefNotFoundError);
      await expect(clone).rejects.toMatchObject({ reason: 'RefNotFound', retryable: false });
      await expectNothingLeft(targetDir);
    }
  });

  it('rejects refs that look like options', async () => {
    await expect(
      cloneRepository({ url: sourceUrl, ref: '--upload-pack=touch /tmp/x', targetDir: target(), allowFileUrls: true }),
    ).rejects.toBeInstanceOf(RefNotFoundError);
  });

  it('reports a missing repository', async () => {
    const targetDir = target();
    const clone = cloneRepository({ url: `file://${root}/does-not-exist.git`, targetDir, allowFileUrls: true });
    await expect(clone).rejects.toBeInstanceOf(RepositoryNotFoundError);
    await expect(clone).rejects.toThrow(/no repository at file:\/\/.*does-not-exist.git; check spec.source.git.url/);
    await expectNothingLeft(targetDir);
  });

  it('rejects file URLs unless allowed, and invalid URLs', async () => {
    await expect(cloneRepository({ url: sourceUrl, targetDir: target() })).rejects.toBeInstanceOf(InvalidGitUrlError);
    await expect(cloneRepository({ url: 'ext::sh -c id', targetDir: target() })).rejects.toMatchObject({ reason: 'InvalidGitUrl' });
  });

  it('removes a temporary directory a crashed clone left for the same target', async () => {
    const targetDir = target();
    const stale = path.join(path.dirname(targetDir), '.workspace.clone-abc123');
    await mkdir(path.join(stale, '.git'), { recursive: true });
    await cloneRepository({ url: sourceUrl, targetDir, allowFileUrls: true });
    expect(await readdir(path.dirname(targetDir))).toEqual(['workspace']);
  });

  it('cleans up when cancelled', async () => {
    const targetDir = target();
    const controller = new AbortController();
    const reason = new Error('cancelled by test');
    controller.abort(reason);
    await expect(cloneRepository({ url: sourceUrl, targetDir, allowFileUrls: true, signal: controller.signal })).rejects.toBe(reason);
    await expectNothingLeft(targetDir);
  });
});

describe('cloneRepository over HTTP', () => {
  let server: Server;
  let baseUrl: string;
  const authorizations: (string | undefined)[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      if (request.url?.startsWith('/private/')) {
        authorizations.push(request.headers.authorization);
        response.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end('auth required');
        return;
      }
      response.writeHead(404).end('not found');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('reports auth required without prompting', async () => {
    const targetDir = target();
    const clone = cloneRepository({ url: `${baseUrl}/private/repo.git`, targetDir });
    await expect(clone).rejects.toBeInstanceOf(RepositoryAuthRequiredError);
    await expect(clone).rejects.toThrow(/requires credentials.*add a credential/);
    await expectNothingLeft(targetDir);
  });

  it('never runs an askpass program from the runner environment', async () => {
    const marker = path.join(root, 'askpass-ran');
    const askpass = path.join(root, 'askpass.sh');
    await writeFile(askpass, `#!/bin/sh\ntouch '${marker}'\necho secret\n`, { mode: 0o755 });
    const saved = { GIT_ASKPASS: process.env.GIT_ASKPASS, SSH_ASKPASS: process.env.SSH_ASKPASS };
    process.env.GIT_ASKPASS = askpass;
    process.env.SSH_ASKPASS = askpass;
    try {
      await expect(cloneRepository({ url: `${baseUrl}/private/repo.git`, targetDir: target() })).rejects.toBeInstanceOf(
        RepositoryAuthRequiredError,
      );
    } finally {
      for (const [key, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
    await expect(readFile(marker)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('sends credentials as a basic auth header and reports their rejection', async () => {
    authorizations.length = 0;
    const clone = cloneRepository({
      url: `${baseUrl}/private/repo.git`,
      targetDir: target(),
      credentials: { kind: 'basic', username: 'ada', password: 's3cret' },
    });
    await expect(clone).rejects.toBeInstanceOf(RepositoryAuthRequiredError);
    expect(authorizations).toContain(`Basic ${Buffer.from('ada:s3cret').toString('base64')}`);
    await expect(clone).rejects.not.toThrow(/s3cret/);
  });

  it('reports a repository the server does not have', async () => {
    await expect(cloneRepository({ url: `${baseUrl}/public/missing.git`, targetDir: target() })).rejects.toBeInstanceOf(
      RepositoryNotFoundError,
    );
  });

  it('reports an unreachable server as retryable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const targetDir = target();
    const clone = cloneRepository({ url: `http://127.0.0.1:${port}/repo.git`, targetDir });
    await expect(clone).rejects.toBeInstanceOf(RepositoryUnreachableError);
    await expect(clone).rejects.toMatchObject({ reason: 'RepositoryUnreachable', retryable: true });
    await expect(clone).rejects.toThrow(/cannot reach http:\/\/127.0.0.1:\d+\/repo.git/);
    await expectNothingLeft(targetDir);
  });
});
