import { silentLogger } from '@warren/base';
import { describe, expect, it } from 'vitest';
import { parseReference } from './reference.js';
import { RegistryClient, isLoopbackHost, parseWwwAuthenticate } from './registry-client.js';

describe('parseWwwAuthenticate', () => {
  it('parses a Docker Hub bearer challenge', () => {
    expect(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/ubuntu:pull' },
      },
    ]);
  });

  it('handles several challenges, spaces, token values and escapes', () => {
    expect(
      parseWwwAuthenticate(
        'Basic realm="Registry Realm", Bearer realm="https://a/t", service=svc , scope="repository:a:pull repository:b:pull",error="in\\"valid"',
      ),
    ).toEqual([
      { scheme: 'basic', params: { realm: 'Registry Realm' } },
      {
        scheme: 'bearer',
        params: { realm: 'https://a/t', service: 'svc', scope: 'repository:a:pull repository:b:pull', error: 'in"valid' },
      },
    ]);
  });

  it('returns nothing for an empty or garbage header', () => {
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate(' , ,= "')).toEqual([]);
  });
});

describe('isLoopbackHost', () => {
  it.each([
    ['localhost', true],
    ['localhost:5000', true],
    ['127.0.0.1:5000', true],
    ['127.8.9.10', true],
    ['[::1]:5000', true],
    ['128.0.0.1', false],
    ['registry.local:5000', false],
    ['localhost.example.com', false],
  ])('%s → %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});

describe('RegistryClient.endpoints', () => {
  const client = new RegistryClient(
    {
      mirrors: {
        'mcr.microsoft.com': ['127.0.0.1:5000'],
        'mcr.microsoft.com/devcontainers': ['127.0.0.1:5000/mirror/devcontainers', 'https://mirror.example/dc/'],
        'index.docker.io': ['127.0.0.1:5001'],
        'ghcr.io/org/app': ['127.0.0.1:5002'],
      },
    },
    silentLogger,
  );
  const endpoints = (text: string) =>
    client
      .endpoints(parseReference(text))
      .map((endpoint) => `${endpoint.host}/${endpoint.repository}${endpoint.mirror ? ' (mirror)' : ''}`);

  it('replaces the longest matching prefix, then tries the registry', () => {
    expect(endpoints('mcr.microsoft.com/devcontainers/base:ubuntu')).toEqual([
      '127.0.0.1:5000/mirror/devcontainers/base (mirror)',
      'mirror.example/dc/base (mirror)',
      'mcr.microsoft.com/devcontainers/base',
    ]);
    expect(endpoints('mcr.microsoft.com/dotnet/sdk')).toEqual(['127.0.0.1:5000/dotnet/sdk (mirror)', 'mcr.microsoft.com/dotnet/sdk']);
  });

  it('matches whole path components only and normalizes Docker Hub', () => {
    expect(endpoints('mcr.microsoft.com/devcontainersx/base')).toEqual([
      '127.0.0.1:5000/devcontainersx/base (mirror)',
      'mcr.microsoft.com/devcontainersx/base',
    ]);
    expect(endpoints('ubuntu')).toEqual(['127.0.0.1:5001/library/ubuntu (mirror)', 'docker.io/library/ubuntu']);
    expect(endpoints('quay.io/a/b')).toEqual(['quay.io/a/b']);
  });

  it('skips a host-only mirror for a prefix that is the whole repository', () => {
    expect(endpoints('ghcr.io/org/app:1')).toEqual(['ghcr.io/org/app']);
  });
});

describe('RegistryClient transport', () => {
  it("uses HTTPS for remote registries and HTTP for loopback and insecure ones, and Docker Hub's API host", async () => {
    const urls: string[] = [];
    const fake = ((url: string | URL | Request) => {
      urls.push(typeof url === 'string' ? url : url instanceof URL ? url.href : url.url);
      return Promise.resolve(new Response('{}', { status: 404 }));
    }) as typeof fetch;
    const client = new RegistryClient({ insecureRegistries: ['registry.lan:5000'] }, silentLogger, { fetch: fake });
    for (const text of ['ubuntu', 'ghcr.io/a/b', '127.0.0.1:5000/a', 'registry.lan:5000/a', 'localhost/a']) {
      await client.resolve(parseReference(text)).catch(() => undefined);
    }
    expect(urls).toEqual([
      'https://registry-1.docker.io/v2/library/ubuntu/manifests/latest',
      'https://ghcr.io/v2/a/b/manifests/latest',
      'http://127.0.0.1:5000/v2/a/manifests/latest',
      'http://registry.lan:5000/v2/a/manifests/latest',
      'http://localhost/v2/a/manifests/latest',
    ]);
  });

  it('sends configured Basic credentials when the registry asks for Basic auth', async () => {
    const seen: (string | null)[] = [];
    const fake = ((_url: string | URL | Request, init?: RequestInit) => {
      const auth = new Headers(init?.headers).get('authorization');
      seen.push(auth);
      if (!auth) return Promise.resolve(new Response('', { status: 401, headers: { 'www-authenticate': 'Basic realm="r"' } }));
      return Promise.resolve(new Response('', { status: 404 }));
    }) as typeof fetch;
    const client = new RegistryClient({ credentials: { 'r.example': { username: 'u', password: 'p' } } }, silentLogger, { fetch: fake });
    await expect(client.resolve(parseReference('r.example/a:1'))).rejects.toThrow('not found');
    expect(seen).toEqual([null, `Basic ${Buffer.from('u:p').toString('base64')}`]);
  });

  it('refuses to send credentials to a plain-HTTP token realm of a remote registry', async () => {
    const fake = (() =>
      Promise.resolve(
        new Response('', { status: 401, headers: { 'www-authenticate': 'Bearer realm="http://auth.example/token",service="s"' } }),
      )) as typeof fetch;
    const client = new RegistryClient({ credentials: { 'r.example': { username: 'u', password: 'p' } } }, silentLogger, { fetch: fake });
    await expect(client.resolve(parseReference('r.example/a:1'))).rejects.toThrow('token realm http://auth.example is not HTTPS');
  });
});
