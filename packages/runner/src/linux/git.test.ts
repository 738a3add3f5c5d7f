import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { classifyGitFailure, readHeadCommit } from './git.js';

describe('classifyGitFailure', () => {
  it.each([
    ["fatal: could not read Username for 'https://github.com': terminal prompts disabled", 'RepositoryAuthRequired', false],
    ['git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.', 'RepositoryAuthRequired', false],
    ["remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://gitlab.com/a/b.git/'", 'RepositoryAuthRequired', false],
    ["remote: Repository not found.\nfatal: repository 'https://github.com/a/b.git/' not found", 'RepositoryNotFound', false],
    ["fatal: '/srv/x' does not appear to be a git repository\nfatal: Could not read from remote repository.", 'RepositoryNotFound', false],
    ['warning: Could not find remote branch x to clone.\nfatal: Remote branch x not found in upstream origin', 'RefNotFound', false],
    ["fatal: unable to access 'https://nope.invalid/': Could not resolve host: nope.invalid", 'RepositoryUnreachable', true],
    ['ssh: connect to host h port 22: Connection refused\nfatal: Could not read from remote repository.', 'RepositoryUnreachable', true],
    ['Host key verification failed.\nfatal: Could not read from remote repository.', 'RepositoryUnreachable', true],
    ["fatal: unable to access 'https://h/': The requested URL returned error: 502", 'RepositoryUnreachable', true],
    ['fatal: write error: No space left on device', 'GitCommandFailed', true],
  ])('classifies %j', (stderr, reason, retryable) => {
    const error = classifyGitFailure(stderr, 'https://user:pw@h/a/b.git', 'x');
    expect(error).toMatchObject({ reason, retryable });
    expect(error.message).not.toContain('pw@');
    expect(error.message).toContain('https://user:***@h/a/b.git');
  });

  it('quotes the lines that name the problem', () => {
    const error = classifyGitFailure(
      "Cloning into 'x'...\nssh: Could not resolve hostname h: Name or service not known\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights",
      'git@h:a/b.git',
      undefined,
    );
    expect(error.message).toMatch(
      /git said: ssh: Could not resolve hostname h: Name or service not known \/ fatal: Could not read from remote repository\.$/,
    );
  });
});

describe('readHeadCommit', () => {
  const sha = 'a'.repeat(40);
  const other = 'b'.repeat(40);
  const layout = async (files: Record<string, string>): Promise<string> => {
    const directory = await mkdtemp(join(tmpdir(), 'warren-head-'));
    for (const [name, content] of Object.entries(files)) {
      await mkdir(dirname(join(directory, '.git', name)), { recursive: true });
      await writeFile(join(directory, '.git', name), content);
    }
    return directory;
  };

  it('reads a detached HEAD, a loose ref and a packed ref, and gives up on anything else', async () => {
    const directories = [
      await layout({ HEAD: `${sha}\n` }),
      await layout({ HEAD: 'ref: refs/heads/main\n', 'refs/heads/main': `${sha}\n`, 'packed-refs': `${other} refs/heads/main\n` }),
      await layout({
        HEAD: 'ref: refs/heads/main\n',
        'packed-refs': `# pack-refs with: peeled fully-peeled sorted\n${other} refs/heads/dev\n${sha} refs/heads/main\n`,
      }),
      await layout({ HEAD: 'ref: refs/heads/main\n' }),
      await layout({}),
    ];
    try {
      expect(await Promise.all(directories.map((directory) => readHeadCommit(directory)))).toEqual([sha, sha, sha, undefined, undefined]);
    } finally {
      for (const directory of directories) await rm(directory, { recursive: true, force: true });
    }
  });
});
