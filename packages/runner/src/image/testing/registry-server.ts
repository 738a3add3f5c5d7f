// Test helpers: a real `docker-registry` (Debian package docker-registry, distribution 2.8) on a free
// loopback port, a plain-HTTP push client, and a tiny fake registry with an optional token server.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '@warren/base';
import { spawnLogged } from '../../linux/index.js';
import type { TestBlob, TestImage } from './build-image.js';

/** A free TCP port on 127.0.0.1 (bound once, then released). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** A running registry: its `host:port` and a stop function that also removes its storage. */
export interface RunningRegistry {
  host: string;
  stop(): Promise<void>;
}

/**
 * Starts `docker-registry serve` with filesystem storage in a temp dir on 127.0.0.1:<free port> and waits
 * until `GET /v2/` answers 200.
 * @throws {Error} when it does not answer within about 15 s (the message carries its output).
 */
export async function startDockerRegistry(): Promise<RunningRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const configPath = join(dir, 'config.yml');
  await writeFile(
    configPath,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${host}`,
      '',
    ].join('\n'),
  );
  const child = spawnLogged(['docker-registry', 'serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.race([exited, sleep(5000).then(() => child.kill('SIGKILL'))]);
    await rm(dir, { recursive: true, force: true });
  };
  for (let attempt = 0; attempt < 150; attempt++) {
    if (child.exitCode !== null) break;
    const ok = await fetch(`http://${host}/v2/`).then(
      (response) => response.ok,
      () => false,
    );
    if (ok) return { host, stop };
    await sleep(100);
  }
  await stop();
  throw new Error(`docker-registry did not start: ${output}`);
}

/** Pushes a blob with a monolithic upload (distribution-spec "POST then PUT"). */
export async function pushBlob(host: string, repository: string, blob: { bytes: Buffer; digest: string }): Promise<void> {
  const started = await fetch(`http://${host}/v2/${repository}/blobs/uploads/`, { method: 'POST' });
  await started.arrayBuffer();
  if (started.status !== 202) throw new Error(`upload start: ${started.status}`);
  const location = new URL(started.headers.get('location')!, `http://${host}`);
  location.searchParams.set('digest', blob.digest);
  const put = await fetch(location, { method: 'PUT', body: blob.bytes, headers: { 'content-type': 'application/octet-stream' } });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`blob put: ${put.status} ${text}`);
}

/** Pushes a manifest or index under `tagOrDigest`. */
export async function pushManifest(host: string, repository: string, tagOrDigest: string, manifest: TestBlob): Promise<void> {
  const put = await fetch(`http://${host}/v2/${repository}/manifests/${tagOrDigest}`, {
    method: 'PUT',
    body: manifest.bytes,
    headers: { 'content-type': manifest.mediaType },
  });
  const text = await put.text();
  if (put.status !== 201) throw new Error(`manifest put: ${put.status} ${text}`);
}

/** Pushes an image's layers, config and manifest, tagged `tag` (omit to push by digest only). */
export async function pushImage(host: string, repository: string, image: TestImage, tag?: string): Promise<void> {
  for (const layer of image.layers) await pushBlob(host, repository, layer);
  await pushBlob(host, repository, image.config);
  await pushManifest(host, repository, tag ?? image.manifest.digest, image.manifest);
}

/** Content and behaviour of a {@link startFakeRegistry}. */
export interface FakeRegistryOptions {
  /** Manifests by `<repository>/<tag or digest>`. */
  manifests: Map<string, TestBlob>;
  /** Blobs by digest (any repository). */
  blobs: Map<string, Buffer>;
  /** When set, requests need `Bearer <token>`; 401s point at this realm, service and scope. */
  bearer?: { realm: string; service: string; token: string };
  /** When set, responses for these blob digests wait for `until` (to test cancellation mid-download). */
  blobGate?: { until: Promise<void>; digests: Set<string> };
}

/** A fake server: its host, the requests it saw (`METHOD path`), and close. */
export interface FakeServer {
  host: string;
  requests: string[];
  /** Paths whose response the client abandoned before it was sent in full. */
  aborted?: string[];
  close(): Promise<void>;
}

async function listen(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<{ server: Server; host: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { server, host: `127.0.0.1:${address.port}` };
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

/** Starts a minimal read-only registry in Node that serves exactly what `options` holds, verbatim. */
export async function startFakeRegistry(options: FakeRegistryOptions): Promise<FakeServer> {
  const requests: string[] = [];
  const aborted: string[] = [];
  const { server, host } = await listen((request, response) => {
    const path = request.url ?? '/';
    requests.push(`${request.method} ${path}`);
    if (options.bearer && request.headers.authorization !== `Bearer ${options.bearer.token}`) {
      const match = /^\/v2\/(.+)\/(manifests|blobs)\//.exec(path);
      const scope = match ? `repository:${match[1]}:pull` : '';
      response.writeHead(401, {
        'www-authenticate': `Bearer realm="${options.bearer.realm}",service="${options.bearer.service}"${scope ? `,scope="${scope}"` : ''}`,
        'content-type': 'application/json',
      });
      response.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
      return;
    }
    if (path === '/v2/') {
      response.writeHead(200).end('{}');
      return;
    }
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (manifest) {
      const blob = options.manifests.get(`${manifest[1]}/${manifest[2]}`);
      if (!blob) {
        response
          .writeHead(404, { 'content-type': 'application/json' })
          .end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      response.writeHead(200, { 'content-type': blob.mediaType, 'content-length': blob.bytes.length }).end(blob.bytes);
      return;
    }
    const blob = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(path);
    const bytes = blob ? options.blobs.get(blob[2]!) : undefined;
    if (!bytes) {
      response
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown' }] }));
      return;
    }
    const send = () => response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length }).end(bytes);
    response.on('close', () => {
      if (!response.writableFinished) aborted.push(path);
    });
    if (options.blobGate?.digests.has(blob![2]!)) void options.blobGate.until.then(send);
    else send();
  });
  return { host, requests, aborted, close: closer(server) };
}

/**
 * Starts a token server (Docker token spec): `GET /token?service=&scope=` with Basic `username:password`
 * answers `{token, expires_in: 300}`; wrong or missing credentials answer 401.
 */
export async function startTokenServer(credentials: { username: string; password: string }, token: string): Promise<FakeServer> {
  const requests: string[] = [];
  const { server, host } = await listen((request, response) => {
    requests.push(`${request.method} ${request.url ?? ''}`);
    const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    if (request.headers.authorization !== expected) {
      response
        .writeHead(401, { 'content-type': 'application/json' })
        .end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
  });
  return { host, requests, close: closer(server) };
}
