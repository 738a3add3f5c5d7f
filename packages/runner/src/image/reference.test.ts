import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from './errors.js';
import { formatReference, lookupKey, parseReference } from './reference.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['ubuntu', 'docker.io', 'library/ubuntu', 'latest', undefined],
    ['ubuntu:22.04', 'docker.io', 'library/ubuntu', '22.04', undefined],
    ['user/app', 'docker.io', 'user/app', 'latest', undefined],
    ['docker.io/ubuntu', 'docker.io', 'library/ubuntu', 'latest', undefined],
    ['index.docker.io/user/app:1', 'docker.io', 'user/app', '1', undefined],
    ['mcr.microsoft.com/devcontainers/base:ubuntu', 'mcr.microsoft.com', 'devcontainers/base', 'ubuntu', undefined],
    ['127.0.0.1:5000/app:v1', '127.0.0.1:5000', 'app', 'v1', undefined],
    ['localhost/app', 'localhost', 'app', 'latest', undefined],
    ['localhost:5000/a/b/c', 'localhost:5000', 'a/b/c', 'latest', undefined],
    ['[::1]:5000/app:x', '[::1]:5000', 'app', 'x', undefined],
    ['Registry/app', 'Registry', 'app', 'latest', undefined],
    [`app@${DIGEST}`, 'docker.io', 'library/app', undefined, DIGEST],
    [`ghcr.io/a/b:tag@${DIGEST}`, 'ghcr.io', 'a/b', 'tag', DIGEST],
    ['a/b__c-d.e_f:T_1.x-y', 'docker.io', 'a/b__c-d.e_f', 'T_1.x-y', undefined],
  ])('%s', (text, registry, repository, tag, digest) => {
    expect(parseReference(text)).toEqual({ registry, repository, tag, digest });
  });

  it.each([
    ['', 'empty'],
    ['Ubuntu', 'lowercase'],
    ['user/App', 'lowercase'],
    ['app:', 'invalid tag'],
    ['app:-x', 'invalid tag'],
    [`app:${'t'.repeat(129)}`, 'invalid tag'],
    ['app@sha256:abc', 'invalid digest'],
    [`app@md5:${'a'.repeat(32)}`, 'unsupported digest'],
    ['a.b/c..d', 'path component'],
    ['a//b', 'path component'],
    ['app_/x', 'path component'],
    ['host:port:x/y', 'invalid registry'],
    ['a'.repeat(64), '64-hex'],
    [`r.io/${'a'.repeat(260)}`, 'longer than'],
  ])('rejects %j', (text, detail) => {
    expect(() => parseReference(text)).toThrow(InvalidReferenceError);
    expect(() => parseReference(text)).toThrow(detail);
  });

  it('round-trips through formatReference', () => {
    for (const text of ['ubuntu', 'a/b:c', `r.io:1/x@${DIGEST}`, `r.io/x:t@${DIGEST}`]) {
      const reference = parseReference(text);
      expect(parseReference(formatReference(reference))).toEqual(reference);
    }
    expect(formatReference(parseReference('ubuntu'))).toBe('docker.io/library/ubuntu:latest');
  });

  it('looks images up by digest when one is given', () => {
    expect(lookupKey(parseReference(`r.io/x:t@${DIGEST}`))).toBe(`r.io/x@${DIGEST}`);
    expect(lookupKey(parseReference('r.io/x'))).toBe('r.io/x:latest');
  });
});
