import { describe, expect, it } from 'vitest';
import { repositoryBasename, splitGitUrlRef, validateGitUrl } from './git-url.js';

describe('validateGitUrl', () => {
  it.each([
    'https://github.com/o/r.git',
    'http://127.0.0.1:8080/r.git',
    'git@host:o/r.git',
    'ssh://git@h/r',
    'file:///srv/git/r.git',
    'git://h/r',
  ])('accepts %s', (url) => expect(validateGitUrl(url)).toBeUndefined());
  it.each([
    ['', /empty/],
    ['-uhttps://x', /starts with "-"/],
    ['ext::sh -c touch% /tmp/pwned', /whitespace|transports/],
    ['ext::foo', /transports/],
    ['ftp://h/r', /scheme "ftp"/],
    ['https://', /parsed as a URL|host/],
    ['https://host', /repository path/],
    ['not a url', /whitespace/],
    ['justaword', /local paths are not allowed/],
  ])('rejects %j', (url, message) => expect(validateGitUrl(url)).toMatch(message));
});

describe('splitGitUrlRef', () => {
  it('splits a #ref suffix', () => {
    expect(splitGitUrlRef('https://h/r.git#v1.2')).toEqual({ url: 'https://h/r.git', ref: 'v1.2' });
    expect(splitGitUrlRef('https://h/r.git')).toEqual({ url: 'https://h/r.git' });
  });
  it('derives the repository basename', () => {
    expect(repositoryBasename('https://h/o/my-app.git')).toBe('my-app');
    expect(repositoryBasename('git@h:o/app')).toBe('app');
  });
});
