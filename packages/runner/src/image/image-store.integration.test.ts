// The image store against a real docker-registry (and small fake registries for corruption and
// token auth): pulls, layer sharing, single flight, mirrors, restart, prune and docker-save import.
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { exec } from '../linux/index.js';
import { DigestMismatchError, ImageNotFoundError, RegistryUnauthorizedError, RegistryUnreachableError } from './errors.js';
import { ImageStore } from './image-store.js';
import { type TestImage, buildImage, buildIndex, buildLayer, buildLayerTar, sha256 } from './testing/build-image.js';
import { recordingLogger } from './testing/recording-logger.js';
import {
  type RunningRegistry,
  freePort,
  pushImage,
  pushManifest,
  startDockerRegistry,
  startFakeRegistry,
  startTokenServer,
} from './testing/registry-server.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const ARM64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };

let registry: RunningRegistry;
let base: TestImage;
let app: TestImage;
let appArm: TestImage;
let other: TestImage;
let dockerImage: TestImage;
let indexDigest: string;

beforeAll(async () => {
  registry = await startDockerRegistry();
  const baseLayer = await buildLayer(
    [
      { name: 'etc/', type: 'directory' },
      { name: 'etc/os-release', content: 'ID=test\n' },
      { name: 'etc/motd', content: 'deleted by app\n' },
      { name: 'var/', type: 'directory' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/old', content: 'hidden by opaque\n' },
      { name: 'home/', type: 'directory' },
      { name: 'home/dev/', type: 'directory', uid: 1000, gid: 1000, mode: 0o750 },
    ],
    'gzip',
  );
  const appLayer = await buildLayer(
    [
      { name: 'etc/', type: 'directory' },
      { name: 'etc/.wh.motd' },
      { name: 'var/', type: 'directory' },
      { name: 'var/cache/', type: 'directory' },
      { name: 'var/cache/.wh..wh..opq' },
      { name: 'var/cache/new', content: 'new\n' },
      { name: 'app/', type: 'directory' },
      { name: 'app/run', content: '#!/bin/sh\n', mode: 0o755 },
    ],
    'zstd',
  );
  const armLayer = await buildLayer([{ name: 'arm', content: 'arm64\n' }], 'gzip');
  const otherLayer = await buildLayer([{ name: 'other', content: 'other image\n' }], 'none');
  base = buildImage([baseLayer]);
  app = buildImage([baseLayer, appLayer], {
    labels: { 'devcontainer.metadata': '[{"remoteUser":"dev"}]' },
    env: ['PATH=/usr/bin', 'A=1'],
    cmd: ['/app/run'],
  });
  appArm = buildImage([baseLayer, armLayer], { architecture: 'arm64', variant: 'v8' });
  other = buildImage([baseLayer, otherLayer]);
  const dockerLayer = await buildLayer([{ name: 'docker', content: 'schema2\n' }], 'gzip', 'docker');
  dockerImage = buildImage([dockerLayer], { flavour: 'docker' });

  await pushImage(registry.host, 'test/base', base, 'v1');
  await pushImage(registry.host, 'test/app', app);
  await pushImage(registry.host, 'test/app', appArm);
  const index = buildIndex([
    { image: appArm, platform: ARM64 },
    { image: app, platform: AMD64 },
  ]);
  indexDigest = index.digest;
  await pushManifest(registry.host, 'test/app', 'v1', index);
  await pushImage(registry.host, 'test/other', other, 'v1');
  await pushImage(registry.host, 'test/docker', dockerImage, 'v1');
  await pushImage(registry.host, 'mirror/devcontainers/base', base, 'v1');
});

afterAll(async () => {
  await registry?.stop();
});

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'warren-images-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ImageStore.pull', () => {
  it('pulls an OCI index for the platform, unpacks gzip and zstd layers top first, and reports progress', async () => {
    const logger = recordingLogger();
    const store = new ImageStore(root, {}, logger, { platform: AMD64 });
    const progress: [number, number][] = [];
    const image = await store.pull(`${registry.host}/test/app:v1`, { onProgress: (done, total) => progress.push([done, total]) });

    expect(image.reference).toBe(`${registry.host}/test/app:v1`);
    expect(image.digest).toBe(indexDigest);
    expect(image.manifestDigest).toBe(app.manifest.digest);
    expect(image.configDigest).toBe(app.config.digest);
    expect(image.diffIds).toEqual([app.layers[1]!.diffId, app.layers[0]!.diffId]);
    expect(image.config).toEqual({
      env: ['PATH=/usr/bin', 'A=1'],
      cmd: ['/app/run'],
      entrypoint: [],
      user: '',
      workingDir: '/',
      labels: { 'devcontainer.metadata': '[{"remoteUser":"dev"}]' },
    });
    expect(image.layers).toHaveLength(2);
    expect(await readFile(join(image.layers[0]!, 'app/run'), 'utf8')).toBe('#!/bin/sh\n');
    expect(await readFile(join(image.layers[1]!, 'etc/os-release'), 'utf8')).toBe('ID=test\n');
    expect((await stat(join(image.layers[0]!, 'etc/motd'))).isCharacterDevice()).toBe(true);
    const home = await stat(join(image.layers[1]!, 'home/dev'));
    expect([home.uid, home.gid, home.mode & 0o777]).toEqual([1000, 1000, 0o750]);
    for (const layer of image.layers) {
      const layerRoot = await stat(layer);
      expect([layerRoot.uid, layerRoot.gid, layerRoot.mode & 0o7777]).toEqual([0, 0, 0o755]);
    }
    const total = app.layers.reduce((sum, layer) => sum + layer.bytes.length, 0);
    expect(progress.at(-1)).toEqual([total, total]);
    expect(progress.every(([, t]) => t === total)).toBe(true);
    // Layer blobs are dropped once unpacked; manifests and config stay.
    const blobs = await readdir(join(root, 'blobs/sha256'));
    expect(blobs.sort()).toEqual([indexDigest, app.manifest.digest, app.config.digest].map((d) => d.slice(7)).sort());

    // The merged view through a real overlay mount.
    const merged = join(root, 'merged');
    await mkdir(merged);
    await exec(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${image.layers.join(':')}`, merged]);
    try {
      expect((await readdir(join(merged, 'etc'))).sort()).toEqual(['os-release']);
      expect(await readdir(join(merged, 'var/cache'))).toEqual(['new']);
    } finally {
      await exec(['umount', merged]);
    }
  });

  it('picks the arm64 manifest for an arm64 host', async () => {
    const store = new ImageStore(root, {}, recordingLogger(), { platform: ARM64 });
    const image = await store.pull(`${registry.host}/test/app:v1`);
    expect(image.manifestDigest).toBe(appArm.manifest.digest);
    expect(await readFile(join(image.layers[0]!, 'arm'), 'utf8')).toBe('arm64\n');
  });

  it('pulls a Docker schema 2 manifest and pulls by digest', async () => {
    const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
    const image = await store.pull(`${registry.host}/test/docker:v1`);
    expect(image.digest).toBe(dockerImage.manifest.digest);
    expect(await readFile(join(image.layers[0]!, 'docker'), 'utf8')).toBe('schema2\n');
    const byDigest = await store.pull(`${registry.host}/test/base@${base.manifest.digest}`);
    expect(byDigest.digest).toBe(base.manifest.digest);
  });

  it('unpacks a layer shared by two images once, and serves get() after a restart without network', async () => {
    const logger = recordingLogger();
    const store = new ImageStore(root, {}, logger, { platform: AMD64 });
    const first = await store.pull(`${registry.host}/test/app:v1`);
    const second = await store.pull(`${registry.host}/test/other:v1`);
    expect(second.layers[1]).toBe(first.layers[1]);
    const unpacked = logger.records.filter((record) => record.message === 'layer unpacked').map((record) => record.fields.diffId);
    expect(unpacked.sort()).toEqual([app.layers[0]!.diffId, app.layers[1]!.diffId, other.layers[1]!.diffId].sort());
    expect((await readdir(join(root, 'layers'))).filter((name) => !name.endsWith('.json'))).toHaveLength(3);

    let fetches = 0;
    const offline = (() => {
      fetches++;
      return Promise.reject(new Error('network disabled'));
    }) as typeof fetch;
    const restarted = new ImageStore(root, {}, recordingLogger(), { platform: AMD64, fetch: offline });
    expect(await restarted.get(`${registry.host}/test/app:v1`)).toEqual(first);
    expect(await restarted.get(`${registry.host}/test/app@${indexDigest}`)).toEqual(first);
    expect(await restarted.get(`${registry.host}/test/never:v1`)).toBeUndefined();
    expect((await restarted.list()).map((image) => image.reference).sort()).toEqual([
      `${registry.host}/test/app:v1`,
      `${registry.host}/test/other:v1`,
    ]);
    expect(fetches).toBe(0);
  });

  it('shares one pull between concurrent callers', async () => {
    const logger = recordingLogger();
    const store = new ImageStore(root, {}, logger, { platform: AMD64 });
    const progressA: number[] = [];
    const progressB: number[] = [];
    const [a, b] = await Promise.all([
      store.pull(`${registry.host}/test/app:v1`, { onProgress: (done) => progressA.push(done) }),
      store.pull(`${registry.host}/test/app:v1`, { onProgress: (done) => progressB.push(done) }),
    ]);
    expect(a).toEqual(b);
    expect(logger.records.filter((record) => record.message === 'image pulled')).toHaveLength(1);
    expect(logger.records.filter((record) => record.message === 'layer unpacked')).toHaveLength(2);
    expect(progressA.length).toBeGreaterThan(0);
    expect(progressB.at(-1)).toBe(progressA.at(-1));
  });

  it('unpacks a base layer once when two images sharing it are pulled at the same time', async () => {
    const logger = recordingLogger();
    const store = new ImageStore(root, {}, logger, { platform: AMD64 });
    const [a, b] = await Promise.all([store.pull(`${registry.host}/test/app:v1`), store.pull(`${registry.host}/test/other:v1`)]);
    expect(a.layers[1]).toBe(b.layers[1]);
    const unpacked = logger.records.filter((record) => record.message === 'layer unpacked').map((record) => String(record.fields.diffId));
    expect(unpacked.filter((diffId) => diffId === base.layers[0]!.diffId)).toHaveLength(1);
    expect(unpacked).toHaveLength(3);
  });

  it('names the image in errors for an unknown image and an unreachable registry', async () => {
    const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
    await expect(store.pull(`${registry.host}/test/missing:v1`)).rejects.toThrow(ImageNotFoundError);
    await expect(store.pull(`${registry.host}/test/app:nope`)).rejects.toThrow(`image "${registry.host}/test/app:nope" not found`);
    const closed = await freePort();
    const error = await store.pull(`127.0.0.1:${closed}/x/y:z`).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RegistryUnreachableError);
    expect((error as Error).message).toContain(`127.0.0.1:${closed}/x/y:z`);
    expect((error as Error).message).toContain('ECONNREFUSED');
  });

  it('falls back through mirrors (refused, 404) to a working one, and from a failing mirror to the registry', async () => {
    const closed = await freePort();
    const logger = recordingLogger();
    const store = new ImageStore(
      root,
      {
        mirrors: {
          'mcr.microsoft.com/devcontainers': [
            `127.0.0.1:${closed}`,
            `${registry.host}/wrong/path`,
            `${registry.host}/mirror/devcontainers`,
          ],
          [registry.host]: [`127.0.0.1:${closed}`],
        },
      },
      logger,
      { platform: AMD64 },
    );
    const image = await store.pull('mcr.microsoft.com/devcontainers/base:v1');
    expect(image.reference).toBe('mcr.microsoft.com/devcontainers/base:v1');
    expect(image.digest).toBe(base.manifest.digest);
    const reasons = logger.records
      .filter((record) => record.message === 'registry endpoint failed, trying the next one')
      .map((record) => String(record.fields.reason));
    expect(reasons).toHaveLength(2);
    expect(reasons[0]).toContain('ECONNREFUSED');
    expect(reasons[1]).toContain('not found');

    const direct = await store.pull(`${registry.host}/test/other:v1`);
    expect(direct.digest).toBe(other.manifest.digest);
  });
});

describe('ImageStore against fake registries', () => {
  it('detects a corrupt layer blob and names its digest, leaving no layer behind', async () => {
    const corrupt = Buffer.from(app.layers[1]!.bytes);
    corrupt.writeUInt8(corrupt.readUInt8(corrupt.length - 1) ^ 0xff, corrupt.length - 1);
    const fake = await startFakeRegistry({
      manifests: new Map([['test/app/v1', app.manifest]]),
      blobs: new Map([
        [app.config.digest, app.config.bytes],
        [app.layers[0]!.digest, app.layers[0]!.bytes],
        [app.layers[1]!.digest, corrupt],
      ]),
    });
    try {
      const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
      const error = await store.pull(`${fake.host}/test/app:v1`).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(DigestMismatchError);
      expect((error as Error).message).toContain(app.layers[1]!.digest);
      expect(await readdir(join(root, 'layers'))).not.toContain(app.layers[1]!.diffId.slice(7, 23));
      expect((await readdir(join(root, 'blobs/sha256'))).some((name) => name.includes('partial'))).toBe(false);
      expect(await store.get(`${fake.host}/test/app:v1`)).toBeUndefined();
    } finally {
      await fake.close();
    }
  });

  it('detects a manifest that does not match the digest it was pulled by', async () => {
    const fake = await startFakeRegistry({ manifests: new Map([[`test/app/${base.manifest.digest}`, app.manifest]]), blobs: new Map() });
    try {
      const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
      await expect(store.pull(`${fake.host}/test/app@${base.manifest.digest}`)).rejects.toThrow(
        `manifest ${base.manifest.digest} does not match`,
      );
    } finally {
      await fake.close();
    }
  });

  it('follows the bearer token flow with Basic credentials for the token request, and caches the token', async () => {
    const credentials = { username: 'dev', password: 's3cret' };
    const tokens = await startTokenServer(credentials, 'tok-123');
    const blobs = new Map<string, Buffer>([[base.config.digest, base.config.bytes]]);
    for (const layer of base.layers) blobs.set(layer.digest, layer.bytes);
    const fake = await startFakeRegistry({
      manifests: new Map([['private/base/v1', base.manifest]]),
      blobs,
      bearer: { realm: `http://${tokens.host}/token`, service: 'fake-registry', token: 'tok-123' },
    });
    try {
      const anonymous = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
      const error = await anonymous.pull(`${fake.host}/private/base:v1`).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(RegistryUnauthorizedError);
      expect((error as Error).message).toContain(`${fake.host}/private/base:v1`);

      tokens.requests.length = 0;
      const store = new ImageStore(join(root, 'b'), { credentials: { [fake.host]: credentials } }, recordingLogger(), { platform: AMD64 });
      const image = await store.pull(`${fake.host}/private/base:v1`);
      expect(image.digest).toBe(base.manifest.digest);
      expect(tokens.requests).toEqual([`GET /token?service=fake-registry&scope=${encodeURIComponent('repository:private/base:pull')}`]);
      // manifest (401 then 200), config and layer with the cached token.
      expect(fake.requests.filter((request) => request.includes('/blobs/'))).toHaveLength(2);
    } finally {
      await fake.close();
      await tokens.close();
    }
  });
});

describe('ImageStore cancellation', () => {
  it('keeps a shared pull going when one caller aborts, and stops it when the last one does', async () => {
    let release!: () => void;
    const blobGate = new Promise<void>((resolve) => (release = resolve));
    const blobs = new Map<string, Buffer>([[base.config.digest, base.config.bytes]]);
    for (const layer of base.layers) blobs.set(layer.digest, layer.bytes);
    const gated = new Set(base.layers.map((layer) => layer.digest));
    const fake = await startFakeRegistry({
      manifests: new Map([['test/base/v1', base.manifest]]),
      blobs,
      blobGate: { until: blobGate, digests: gated },
    });
    try {
      const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
      const first = new AbortController();
      const second = new AbortController();
      const reference = `${fake.host}/test/base:v1`;
      const a = store.pull(reference, { signal: first.signal });
      const b = store.pull(reference, { signal: second.signal });
      await waitFor(() => fake.requests.some((request) => request.includes(base.layers[0]!.digest)));
      first.abort(new Error('first caller gone'));
      await expect(a).rejects.toThrow('first caller gone');
      release();
      expect((await b).digest).toBe(base.manifest.digest);
      expect(fake.aborted).toEqual([]);
    } finally {
      release();
      await fake.close();
    }
  });

  it('aborts the download when its only caller aborts and leaves no layer or scratch behind', async () => {
    const blobs = new Map<string, Buffer>([[base.config.digest, base.config.bytes]]);
    for (const layer of base.layers) blobs.set(layer.digest, layer.bytes);
    const gated = new Set(base.layers.map((layer) => layer.digest));
    const fake = await startFakeRegistry({
      manifests: new Map([['test/base/v1', base.manifest]]),
      blobs,
      blobGate: { until: new Promise<void>(() => {}), digests: gated },
    });
    try {
      const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
      const controller = new AbortController();
      const pull = store.pull(`${fake.host}/test/base:v1`, { signal: controller.signal });
      await waitFor(() => fake.requests.some((request) => request.includes(base.layers[0]!.digest)));
      controller.abort(new Error('user cancelled'));
      await expect(pull).rejects.toThrow('user cancelled');
      // The shared download saw the abort: the client dropped the blob request.
      await waitFor(() => fake.aborted!.length > 0);
      expect(fake.aborted).toEqual([`/v2/test/base/blobs/${base.layers[0]!.digest}`]);
      expect(await readdir(join(root, 'layers'))).toEqual([]);
    } finally {
      await fake.close();
    }
  });
});

describe('ImageStore.prune', () => {
  it('removes images not in use and their unshared layers and blobs', async () => {
    const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
    const keep = await store.pull(`${registry.host}/test/app:v1`);
    const drop = await store.pull(`${registry.host}/test/other:v1`);
    const result = await store.prune(new Set([keep.digest]));
    expect(result.removedImages).toEqual([`${registry.host}/test/other:v1`]);
    expect(result.removedLayers).toEqual([other.layers[1]!.diffId.slice(7, 23)]);
    expect(result.freedBytes).toBeGreaterThan(0);
    expect(await store.get(`${registry.host}/test/other:v1`)).toBeUndefined();
    expect(await store.get(`${registry.host}/test/app:v1`)).toEqual(keep);
    await expect(stat(drop.layers[0]!)).rejects.toThrow();
    await stat(drop.layers[1]!); // the shared base layer stays
    expect(await readdir(join(root, 'blobs/sha256'))).not.toContain(other.config.digest.slice(7));

    const all = await store.prune(new Set());
    expect(all.removedLayers).toHaveLength(2);
    expect(await store.list()).toEqual([]);
    expect(await readdir(join(root, 'blobs/sha256'))).toEqual([]);
  });
});

describe('ImageStore.importDockerArchive', () => {
  it('imports a docker save archive (Docker 20.10 layout, a repeated layer as symlink)', async () => {
    const work = await mkdtemp(join(tmpdir(), 'warren-save-'));
    try {
      const baseTar = await buildLayerTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/built', content: 'locally\n' },
      ]);
      const topTar = await buildLayerTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/.wh.built' },
        { name: 'top', content: 'top\n' },
      ]);
      const config = Buffer.from(
        JSON.stringify({
          architecture: 'amd64',
          os: 'linux',
          config: { Env: ['X=1'], Cmd: ['bash'], User: 'dev', Labels: { 'devcontainer.metadata': '[]' } },
          rootfs: { type: 'layers', diff_ids: [sha256(baseTar), sha256(topTar)] },
        }),
      );
      const configHex = sha256(config).slice(7);
      await mkdir(join(work, 'save/aaa'), { recursive: true });
      await mkdir(join(work, 'save/bbb'), { recursive: true });
      await writeFile(join(work, 'save', `${configHex}.json`), config);
      await writeFile(join(work, 'save/aaa/layer.tar'), baseTar);
      await writeFile(join(work, 'save/bbb/layer.tar'), topTar);
      await writeFile(join(work, 'save/aaa/VERSION'), '1.0');
      await writeFile(
        join(work, 'save/manifest.json'),
        JSON.stringify([
          { Config: `${configHex}.json`, RepoTags: ['warren-build/abc:latest'], Layers: ['aaa/layer.tar', 'bbb/layer.tar'] },
        ]),
      );
      await exec(['tar', '-c', '-f', join(work, 'image.tar'), '-C', join(work, 'save'), '.']);

      const store = new ImageStore(root, {}, recordingLogger(), { platform: AMD64 });
      const image = await store.importDockerArchive(join(work, 'image.tar'), 'warren-build/abc');
      expect(image.reference).toBe('docker.io/warren-build/abc:latest');
      expect(image.configDigest).toBe(sha256(config));
      expect(image.config.user).toBe('dev');
      expect(image.config.labels).toEqual({ 'devcontainer.metadata': '[]' });
      expect(await readFile(join(image.layers[0]!, 'top'), 'utf8')).toBe('top\n');
      expect((await stat(join(image.layers[0]!, 'etc/built'))).isCharacterDevice()).toBe(true);
      expect(await store.get('warren-build/abc')).toEqual(image);
      expect(await store.get(`warren-build/abc@${image.digest}`)).toEqual(image);
      expect(await readdir(join(root, 'tmp'))).toEqual([]);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

/** Polls `condition` every 10 ms (up to 10 s); no assertion on time, only a bound on waiting. */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!condition()) throw new Error('condition not reached');
}
