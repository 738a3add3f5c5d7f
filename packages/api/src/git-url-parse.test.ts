import { describe, expect, it } from 'vitest';
import { InvalidError } from '@warren/base';
import { redactGitUrl, parseGitUrl } from './git-url.js';

describe('parseGitUrl', () => {
  it.each([
    ['https://github.com/org/repo.git', 'https', 'github.com', 'repo'],
    ['http://git.example.com:8080/a/b', 'http', 'git.example.com', 'b'],
    ['ssh://git@github.com/org/repo.git', 'ssh', 'github.com', 'repo'],
    ['git+ssh://git@host/org/repo', 'ssh', 'host', 'repo'],
    ['git://host/repo.git', 'git', 'host', 'repo'],
    ['file:///srv/git/project.git', 'file', '', 'project'],
    ['https://user@host/org/repo/', 'https', 'host', 'repo'],
  ])('accepts %s', (url, scheme, host, name) => {
    const parsed = parseGitUrl(url);
    expect(parsed).toMatchObject({ scheme, host, repositoryName: name, scpLike: false });
  });

  it('accepts scp-like URLs as ssh', () => {
    expect(parseGitUrl('git@github.com:org/repo.git')).toEqual({
      scheme: 'ssh',
      scpLike: true,
      host: 'github.com',
      path: 'org/repo.git',
      repositoryName: 'repo',
    });
    expect(parseGitUrl('host.example:repo')).toMatchObject({ host: 'host.example', repositoryName: 'repo' });
  });

  it.each([
    ['', /empty/],
    ['https://host/org/repo .git', /whitespace/],
    ['https://host/repo\n', /whitespace/],
    ['-uhttps://host/repo', /starts with "-"/],
    ['ext::sh -c touch% /tmp/pwned', /whitespace|remote-helper/],
    ['ext::sh', /remote-helper/],
    ['fd::17', /remote-helper/],
    ['ftp://host/repo', /scheme "ftp" is not supported/],
    ['ssh://-oProxyCommand=x/repo', /host starts with "-"/],
    ['-oProxyCommand=x:repo', /starts with "-"/],
    ['git@-oProxyCommand=x:repo', /host starts with "-"/],
    ['-x@host:repo', /starts with "-"/],
    ['/srv/git/repo', /local paths/],
    ['./repo', /local paths/],
    ['https://user:secret@host/repo.git', /password/],
    ['https://host/', /path is empty/],
    ['https:///repo', /host is empty|path is empty/],
    ['file://otherhost/repo', /must not name a host/],
    ['host:', /path is empty/],
  ])('rejects %j', (url, why) => {
    let caught: unknown;
    try {
      parseGitUrl(url);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(InvalidError);
    const error = caught as InvalidError;
    expect(error.reason).toBe('InvalidGitUrl');
    expect(error.message).toMatch(why);
    expect(error.causes[0]?.field).toBe('spec.source.git.url');
  });
});

describe('parseGitUrl length', () => {
  it('rejects URLs longer than the limit', () => {
    expect(() => parseGitUrl(`https://host/${'x'.repeat(3000)}`)).toThrow(/longer than 2048/);
  });
});

describe('redactGitUrl', () => {
  it('hides passwords and keeps everything else', () => {
    expect(redactGitUrl('https://user:tok@host/repo')).toBe('https://user:***@host/repo');
    expect(redactGitUrl('https://host/repo')).toBe('https://host/repo');
    expect(redactGitUrl('git@host:repo')).toBe('git@host:repo');
  });
});
