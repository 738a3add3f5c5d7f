import { describe, expect, it } from 'vitest';
import { InvalidImageError, NoMatchingPlatformError } from './errors.js';
import { type Descriptor, MediaTypes, parseImageConfig, parseManifest, selectPlatform } from './manifest.js';

const digest = (n: number) => `sha256:${String(n).padStart(64, '0')}`;
const entry = (n: number, platform?: Descriptor['platform'], mediaType: string = MediaTypes.ociManifest): Descriptor => ({
  mediaType,
  digest: digest(n),
  size: 100,
  ...(platform ? { platform } : {}),
});

describe('selectPlatform', () => {
  const index = [
    entry(1, { os: 'linux', architecture: 'arm', variant: 'v6' }),
    entry(2, { os: 'linux', architecture: 'amd64' }),
    entry(3, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    entry(4, { os: 'windows', architecture: 'amd64' }),
    entry(5, { os: 'unknown', architecture: 'unknown' }),
    entry(6, { os: 'linux', architecture: 'arm', variant: 'v7' }),
  ];

  it('matches os and architecture', () => {
    expect(selectPlatform('r', index, { os: 'linux', architecture: 'amd64' }).digest).toBe(digest(2));
    expect(selectPlatform('r', index, { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest).toBe(digest(3));
  });

  it('treats an empty arm64 variant as v8', () => {
    expect(
      selectPlatform('r', [entry(7, { os: 'linux', architecture: 'arm64' })], { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest,
    ).toBe(digest(7));
    expect(selectPlatform('r', index, { os: 'linux', architecture: 'arm64' }).digest).toBe(digest(3));
  });

  it('prefers the exact arm variant, else the closest lower one', () => {
    expect(selectPlatform('r', index, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(digest(6));
    expect(selectPlatform('r', index.slice(0, 3), { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(digest(1));
    expect(() =>
      selectPlatform('r', [entry(6, { os: 'linux', architecture: 'arm', variant: 'v7' })], {
        os: 'linux',
        architecture: 'arm',
        variant: 'v6',
      }),
    ).toThrow(NoMatchingPlatformError);
  });

  it('prefers an exact amd64 variant over none, and the first of equals', () => {
    const variants = [
      entry(8, { os: 'linux', architecture: 'amd64' }),
      entry(9, { os: 'linux', architecture: 'amd64', variant: 'v3' }),
      entry(10, { os: 'linux', architecture: 'amd64' }),
    ];
    expect(selectPlatform('r', variants, { os: 'linux', architecture: 'amd64', variant: 'v3' }).digest).toBe(digest(9));
    expect(selectPlatform('r', variants, { os: 'linux', architecture: 'amd64' }).digest).toBe(digest(8));
  });

  it('names the wanted and available platforms when nothing matches', () => {
    expect(() => selectPlatform('ex/img:1', index, { os: 'linux', architecture: 's390x' })).toThrow(
      'image "ex/img:1" has no manifest for platform linux/s390x (available: linux/arm/v6, linux/amd64, linux/arm64/v8, windows/amd64, unknown/unknown, linux/arm/v7)',
    );
  });

  it('ignores entries that are not image manifests', () => {
    expect(() =>
      selectPlatform('r', [entry(11, { os: 'linux', architecture: 'amd64' }, MediaTypes.ociIndex)], { os: 'linux', architecture: 'amd64' }),
    ).toThrow(NoMatchingPlatformError);
  });
});

describe('parseManifest', () => {
  const manifest = {
    schemaVersion: 2,
    config: { mediaType: MediaTypes.ociConfig, digest: digest(1), size: 10 },
    layers: [{ mediaType: MediaTypes.ociLayerZstd, digest: digest(2), size: 20 }],
  };

  it('infers the type from Content-Type or shape when mediaType is absent', () => {
    expect(parseManifest('r', Buffer.from(JSON.stringify(manifest))).kind).toBe('manifest');
    expect(parseManifest('r', Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }))).kind).toBe('index');
    expect(parseManifest('r', Buffer.from(JSON.stringify(manifest)), `${MediaTypes.dockerManifest}; charset=utf-8`).mediaType).toBe(
      MediaTypes.dockerManifest,
    );
  });

  it('rejects schema 1, unknown layer types and bad digests', () => {
    expect(() =>
      parseManifest(
        'r',
        Buffer.from(JSON.stringify({ ...manifest, mediaType: 'application/vnd.docker.distribution.manifest.v1+prettyjws' })),
      ),
    ).toThrow('unsupported manifest media type');
    expect(() =>
      parseManifest(
        'r',
        Buffer.from(JSON.stringify({ ...manifest, layers: [{ mediaType: 'application/x-foo', digest: digest(2), size: 1 }] })),
      ),
    ).toThrow('unsupported layer media type');
    expect(() =>
      parseManifest('r', Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, digest: 'sha256:xyz' } }))),
    ).toThrow(InvalidImageError);
    expect(() => parseManifest('r', Buffer.from('not json'))).toThrow('manifest is not JSON');
  });
});

describe('parseImageConfig', () => {
  it('reads the runtime fields and diff_ids with empty defaults', () => {
    const config = parseImageConfig(
      'r',
      Buffer.from(
        JSON.stringify({
          architecture: 'arm64',
          variant: 'v8',
          os: 'linux',
          config: { Env: ['A=1'], Labels: { a: 'b', n: 1 } },
          rootfs: { type: 'layers', diff_ids: [digest(3)] },
        }),
      ),
    );
    expect(config).toEqual({
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      diffIds: [digest(3)],
      runtime: { env: ['A=1'], cmd: [], entrypoint: [], user: '', workingDir: '', labels: { a: 'b' } },
    });
    expect(() => parseImageConfig('r', Buffer.from('{}'))).toThrow('rootfs.diff_ids');
  });
});
