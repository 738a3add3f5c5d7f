// OCI distribution API client (distribution-spec spec.md "Pull") on Node's fetch: anonymous, Basic and
// bearer-token auth (Docker registry token auth spec, docs/spec/auth/token.md), mirrors per registry
// prefix with fallback, platform resolution of indexes, and digest verification of everything it reads.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { type Logger, errorMessage } from '@warren/base';
import {
  DigestMismatchError,
  ImageNotFoundError,
  InvalidImageError,
  RegistryError,
  RegistryUnauthorizedError,
  RegistryUnreachableError,
} from './errors.js';
import { type Descriptor, type ImageManifest, MANIFEST_ACCEPT, type Platform, parseManifest, selectPlatform } from './manifest.js';
import { DOCKER_HUB, type ImageReference, formatReference, referenceName } from './reference.js';

/** Credentials for one registry host. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** Registry settings of a runner (part of its config file). */
export interface RegistryConfig {
  /**
   * Mirrors per reference prefix `host[/path]`, tried in order before the registry itself, e.g.
   * `{"docker.io": ["127.0.0.1:5000"], "mcr.microsoft.com/devcontainers": ["127.0.0.1:5000/mirror/devcontainers"]}`:
   * the prefix is replaced by the mirror, so `mcr.microsoft.com/devcontainers/base` is pulled as
   * `127.0.0.1:5000/mirror/devcontainers/base` (registries.conf(5) `prefix`/`location` semantics).
   * The longest matching prefix wins.
   */
  mirrors?: Record<string, string[]>;
  /** Credentials per registry host (`host[:port]`, `docker.io` for Docker Hub), used for token requests or as Basic auth. */
  credentials?: Record<string, RegistryCredentials>;
  /** Hosts (`host` or `host:port`) reached over plain HTTP. Loopback hosts always are, as in Docker. */
  insecureRegistries?: string[];
}

/** Where a repository is fetched from: the registry itself or one of its mirrors. */
export interface RegistryEndpoint {
  /** Host as written in references or config, e.g. `docker.io`, `127.0.0.1:5000`. */
  host: string;
  /** Repository path at this host. */
  repository: string;
  /** True for a mirror, false for the reference's own registry. */
  mirror: boolean;
}

/** A manifest resolved for the host platform. */
export interface ResolvedManifest {
  /** Digest of what the reference names: the index when it is one, else the manifest. */
  digest: string;
  /** Digest of the platform's image manifest (equals `digest` when there is no index). */
  manifestDigest: string;
  manifest: ImageManifest;
  /** The platform manifest's bytes as served (they hash to `manifestDigest`). */
  manifestBytes: Buffer;
  /** The index's bytes as served when the reference names an index (they hash to `digest`). */
  indexBytes?: Buffer;
  /** The endpoint that served the manifest; blobs are tried there first. */
  endpoint: RegistryEndpoint;
}

/** One challenge of a `WWW-Authenticate` header: scheme (lowercase) and parameters (keys lowercase). */
export interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
}

/** Options of {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** Replaces the global fetch (tests). */
  fetch?: typeof fetch;
}

/** Manifests and configs are read into memory; a registry sending more is misbehaving (distribution's own limit is 4 MiB). */
const MAX_DOCUMENT_BYTES = 8 * 1024 * 1024;
/** Seconds a token lives when the token server omits `expires_in` (token.md: default 60). */
const DEFAULT_TOKEN_SECONDS = 60;

/**
 * Parses a `WWW-Authenticate` header into challenges (RFC 7235 §4.1: `scheme param=value, param="quoted"`,
 * several challenges separated by commas), e.g. `Bearer realm="https://auth",service="registry",scope="repository:a:pull"`.
 * Unparseable pieces are skipped, never thrown.
 */
export function parseWwwAuthenticate(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < header.length && /[\s,]/.test(header[i]!)) i++;
  };
  const token = () => {
    const start = i;
    while (i < header.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z/]/.test(header[i]!)) i++;
    return header.slice(start, i);
  };
  while (i < header.length) {
    skipSpace();
    const word = token();
    if (!word) {
      i++;
      continue;
    }
    while (header[i] === ' ') i++;
    if (header[i] === '=' && challenges.length > 0) {
      // A parameter of the current challenge.
      i++;
      while (header[i] === ' ') i++;
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < header.length && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < header.length) i++;
          value += header[i];
          i++;
        }
        i++;
      } else {
        const start = i;
        while (i < header.length && header[i] !== ',') i++;
        value = header.slice(start, i).trim();
      }
      challenges[challenges.length - 1]!.params[word.toLowerCase()] = value;
    } else if (header[i] === '=') {
      i++; // a parameter before any scheme: malformed, skip it
    } else {
      challenges.push({ scheme: word.toLowerCase(), params: {} });
    }
  }
  return challenges;
}

/** True for `localhost`, `127.0.0.0/8` and `::1`, with or without a port; Docker talks plain HTTP to these. */
export function isLoopbackHost(host: string): boolean {
  const name = hostName(host);
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** Strips the port and IPv6 brackets: `[::1]:5000` → `::1`, `r.io:443` → `r.io`. */
function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}

/** Normalizes a mirror-config prefix or host the way references are normalized. */
function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  const slash = trimmed.indexOf('/');
  const host = slash >= 0 ? trimmed.slice(0, slash) : trimmed;
  const path = slash >= 0 ? trimmed.slice(slash) : '';
  return (host === 'index.docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB : host) + path;
}

/** Thrown by the fallback loop's callers to decide whether the next endpoint may help. */
function isFallbackError(error: unknown): boolean {
  return (
    error instanceof RegistryUnreachableError ||
    error instanceof ImageNotFoundError ||
    error instanceof RegistryUnauthorizedError ||
    error instanceof RegistryError
  );
}

interface CachedToken {
  token: string;
  expiresAtMs: number;
}

/**
 * Reads manifests and blobs from OCI registries. Stateless apart from a token cache per
 * registry host and pull scope, so one instance serves a whole runner.
 */
export class RegistryClient {
  private readonly fetch: typeof fetch;
  private readonly tokens = new Map<string, CachedToken>();
  /** Hosts that answered with a Basic challenge: we send Basic credentials up front there. */
  private readonly basicHosts = new Set<string>();
  private readonly mirrors: [string, string[]][];

  constructor(
    private readonly config: RegistryConfig,
    private readonly logger: Logger,
    options: RegistryClientOptions = {},
  ) {
    this.fetch = options.fetch ?? fetch;
    this.mirrors = Object.entries(config.mirrors ?? {})
      .map(([prefix, targets]): [string, string[]] => [
        normalizePrefix(prefix),
        targets.map((target) => target.replace(/^https?:\/\//, '').replace(/\/+$/, '')),
      ])
      .sort((a, b) => b[0].length - a[0].length);
  }

  /**
   * The endpoints to try for `reference`, in order: mirrors of the longest matching prefix, then the
   * registry itself. A mirror whose mapping yields an empty repository is left out.
   */
  endpoints(reference: ImageReference): RegistryEndpoint[] {
    const name = referenceName(reference);
    const endpoints: RegistryEndpoint[] = [];
    const match = this.mirrors.find(([prefix]) => name === prefix || name.startsWith(`${prefix}/`));
    if (match) {
      const [prefix, targets] = match;
      const remainder = name.slice(prefix.length); // '' or '/…'
      for (const target of targets) {
        const slash = target.indexOf('/');
        const host = slash >= 0 ? target.slice(0, slash) : target;
        const path = slash >= 0 ? target.slice(slash + 1) : '';
        const repository = (path ? `${path}${remainder}` : remainder.slice(1)).replace(/^\/+/, '');
        if (repository) endpoints.push({ host, repository, mirror: true });
      }
    }
    endpoints.push({ host: reference.registry, repository: reference.repository, mirror: false });
    return endpoints;
  }

  /**
   * Fetches the manifest `reference` names (by digest when it has one, else by tag) and, for an
   * index, the manifest for `platform` (default: the host's). Manifest bytes are verified against
   * the reference's digest, the index descriptor, and the registry's `Docker-Content-Digest` header.
   * @throws {ImageNotFoundError} when no endpoint has it (404 MANIFEST_UNKNOWN / NAME_UNKNOWN).
   * @throws {RegistryUnreachableError} | {RegistryUnauthorizedError} | {RegistryError} from the last endpoint tried.
   * @throws {DigestMismatchError} | {InvalidImageError} | {NoMatchingPlatformError} on bad content (no fallback).
   */
  async resolve(reference: ImageReference, options: { signal?: AbortSignal; platform?: Platform } = {}): Promise<ResolvedManifest> {
    const text = formatReference(reference);
    return this.tryEndpoints(reference, this.endpoints(reference), async (endpoint) => {
      const top = await this.fetchManifest(
        reference,
        endpoint,
        reference.digest ?? reference.tag ?? 'latest',
        reference.digest,
        options.signal,
      );
      const document = parseManifest(text, top.bytes, top.contentType);
      if (document.kind === 'manifest')
        return { digest: top.digest, manifestDigest: top.digest, manifest: document, manifestBytes: top.bytes, endpoint };
      const chosen = selectPlatform(text, document.manifests, options.platform);
      const platformManifest = await this.fetchManifest(reference, endpoint, chosen.digest, chosen.digest, options.signal);
      const manifest = parseManifest(text, platformManifest.bytes, platformManifest.contentType);
      if (manifest.kind !== 'manifest') throw new InvalidImageError(text, `index entry ${chosen.digest} is not an image manifest`);
      return {
        digest: top.digest,
        manifestDigest: chosen.digest,
        manifest,
        manifestBytes: platformManifest.bytes,
        indexBytes: top.bytes,
        endpoint,
      };
    });
  }

  /**
   * Reads a small blob (an image config) into memory and verifies its digest and size.
   * Endpoints are tried with `preferred` first, then the others in order.
   * @throws like {@link RegistryClient.resolve}; {InvalidImageError} when larger than 8 MiB.
   */
  async fetchBlobBytes(
    reference: ImageReference,
    descriptor: Descriptor,
    options: { signal?: AbortSignal; preferred?: RegistryEndpoint } = {},
  ): Promise<Buffer> {
    const text = formatReference(reference);
    if (descriptor.size > MAX_DOCUMENT_BYTES)
      throw new InvalidImageError(text, `blob ${descriptor.digest} is ${descriptor.size} bytes, more than a config may be`);
    return this.tryEndpoints(reference, this.blobEndpoints(reference, options.preferred), async (endpoint) => {
      const response = await this.request(reference, endpoint, `blobs/${descriptor.digest}`, {}, options.signal);
      const bytes = await readLimited(text, response, MAX_DOCUMENT_BYTES);
      verifyBytes(text, descriptor.digest, bytes, 'blob');
      if (bytes.length !== descriptor.size)
        throw new DigestMismatchError(text, descriptor.digest, `${bytes.length} bytes instead of ${descriptor.size}`, 'blob');
      return bytes;
    });
  }

  /**
   * Streams a blob to `path` (written as `path.<random>.partial`, renamed when verified), hashing
   * while it streams. `onBytes(n)` is called with each chunk's size in bytes.
   * @throws {DigestMismatchError} naming the digest when content or size differ from `descriptor`.
   * @throws like {@link RegistryClient.resolve} for transport errors (after trying every endpoint).
   */
  async downloadBlob(
    reference: ImageReference,
    descriptor: Descriptor,
    path: string,
    options: { signal?: AbortSignal; preferred?: RegistryEndpoint; onBytes?: (bytes: number) => void } = {},
  ): Promise<void> {
    const text = formatReference(reference);
    await this.tryEndpoints(reference, this.blobEndpoints(reference, options.preferred), async (endpoint) => {
      const response = await this.request(reference, endpoint, `blobs/${descriptor.digest}`, {}, options.signal);
      if (!response.body) throw new RegistryError(text, endpoint.host, response.status, 'empty blob response');
      const partial = `${path}.${randomBytes(6).toString('hex')}.partial`;
      const hash = createHash(digestAlgorithm(descriptor.digest));
      let size = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          size += chunk.length;
          if (size > descriptor.size) {
            callback(new DigestMismatchError(text, descriptor.digest, `more than ${descriptor.size} bytes`, 'blob'));
            return;
          }
          hash.update(chunk);
          options.onBytes?.(chunk.length);
          callback(null, chunk);
        },
      });
      try {
        try {
          await pipeline(Readable.fromWeb(response.body as WebReadableStream<Uint8Array>), meter, createWriteStream(partial), {
            signal: options.signal,
          });
        } catch (error) {
          if (options.signal?.aborted || error instanceof DigestMismatchError) throw error;
          throw new RegistryUnreachableError(text, endpoint.host, `blob ${descriptor.digest} download failed: ${errorMessage(error)}`, {
            cause: error,
          });
        }
        const actual = `${digestAlgorithm(descriptor.digest)}:${hash.digest('hex')}`;
        if (actual !== descriptor.digest) throw new DigestMismatchError(text, descriptor.digest, actual, 'blob');
        if (size !== descriptor.size)
          throw new DigestMismatchError(text, descriptor.digest, `${size} bytes instead of ${descriptor.size}`, 'blob');
        await rename(partial, path);
      } finally {
        await rm(partial, { force: true });
      }
    });
  }

  private blobEndpoints(reference: ImageReference, preferred?: RegistryEndpoint): RegistryEndpoint[] {
    const all = this.endpoints(reference);
    if (!preferred) return all;
    return [preferred, ...all.filter((endpoint) => endpoint.host !== preferred.host || endpoint.repository !== preferred.repository)];
  }

  /** Runs `operation` against each endpoint in turn until one succeeds; logs why it moved on. */
  private async tryEndpoints<T>(
    reference: ImageReference,
    endpoints: RegistryEndpoint[],
    operation: (endpoint: RegistryEndpoint) => Promise<T>,
  ): Promise<T> {
    let lastError: unknown;
    for (const [index, endpoint] of endpoints.entries()) {
      try {
        return await operation(endpoint);
      } catch (error) {
        if (!isFallbackError(error) || index === endpoints.length - 1) throw error;
        lastError = error;
        this.logger.warn(
          {
            reference: formatReference(reference),
            endpoint: `${endpoint.host}/${endpoint.repository}`,
            mirror: endpoint.mirror,
            reason: errorMessage(error),
          },
          'registry endpoint failed, trying the next one',
        );
      }
    }
    throw lastError;
  }

  private async fetchManifest(
    reference: ImageReference,
    endpoint: RegistryEndpoint,
    tagOrDigest: string,
    expectedDigest: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: Buffer; digest: string; contentType: string | undefined }> {
    const text = formatReference(reference);
    const response = await this.request(reference, endpoint, `manifests/${tagOrDigest}`, { accept: MANIFEST_ACCEPT }, signal);
    const bytes = await readLimited(text, response, MAX_DOCUMENT_BYTES);
    const algorithm = expectedDigest ? digestAlgorithm(expectedDigest) : 'sha256';
    const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
    if (expectedDigest && digest !== expectedDigest) throw new DigestMismatchError(text, expectedDigest, digest, 'manifest');
    // distribution-spec "Pulling manifests": Docker-Content-Digest is the digest of the bytes served.
    const header = response.headers.get('docker-content-digest');
    if (header && header.startsWith(`${algorithm}:`) && header !== digest) throw new DigestMismatchError(text, header, digest, 'manifest');
    return { bytes, digest, contentType: response.headers.get('content-type') ?? undefined };
  }

  private baseUrl(host: string): string {
    const apiHost = host === DOCKER_HUB ? 'registry-1.docker.io' : host;
    const insecure =
      isLoopbackHost(host) || (this.config.insecureRegistries ?? []).some((entry) => entry === host || entry === hostName(host));
    return `${insecure ? 'http' : 'https'}://${apiHost}`;
  }

  private credentialsFor(host: string): RegistryCredentials | undefined {
    const credentials = this.config.credentials ?? {};
    return credentials[host] ?? (host === DOCKER_HUB ? (credentials['index.docker.io'] ?? credentials['registry-1.docker.io']) : undefined);
  }

  /**
   * GETs `/v2/<repository>/<path>` with auth: a cached bearer token for the pull scope, or Basic for hosts
   * that asked for it; on 401 it follows the challenge once (token.md "How to authenticate").
   * @returns a 2xx response whose body the caller must consume.
   */
  private async request(
    reference: ImageReference,
    endpoint: RegistryEndpoint,
    path: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    const text = formatReference(reference);
    const url = `${this.baseUrl(endpoint.host)}/v2/${endpoint.repository}/${path}`;
    const scope = `repository:${endpoint.repository}:pull`;
    const tokenKey = `${endpoint.host} ${scope}`;
    const credentials = this.credentialsFor(endpoint.host);
    const authorization = (): string | undefined => {
      const cached = this.tokens.get(tokenKey);
      if (cached && cached.expiresAtMs > Date.now()) return `Bearer ${cached.token}`;
      if (credentials && this.basicHosts.has(endpoint.host)) return basicAuth(credentials);
      return undefined;
    };
    for (let attempt = 0; ; attempt++) {
      const auth = authorization();
      const response = await this.send(text, endpoint.host, url, { ...headers, ...(auth ? { authorization: auth } : {}) }, signal);
      if (response.ok) return response;
      const body = await response.text().catch(() => '');
      const detail = registryErrorDetail(body) || response.statusText || 'no detail';
      if (response.status === 401 && attempt === 0) {
        const challenges = parseWwwAuthenticate(response.headers.get('www-authenticate') ?? '');
        const bearer = challenges.find((challenge) => challenge.scheme === 'bearer');
        const basic = challenges.find((challenge) => challenge.scheme === 'basic');
        if (bearer?.params.realm) {
          await this.fetchToken(text, endpoint.host, bearer.params, scope, tokenKey, credentials, signal);
          continue;
        }
        if (basic && credentials) {
          this.basicHosts.add(endpoint.host);
          continue;
        }
        throw new RegistryUnauthorizedError(text, endpoint.host, credentials ? detail : `${detail} (no credentials configured)`);
      }
      if (response.status === 401 || response.status === 403) throw new RegistryUnauthorizedError(text, endpoint.host, detail);
      if (response.status === 404) throw new ImageNotFoundError(text, `${endpoint.host}/${endpoint.repository}: ${detail}`);
      throw new RegistryError(text, endpoint.host, response.status, detail);
    }
  }

  private async send(
    text: string,
    host: string,
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<Response> {
    try {
      return await this.fetch(url, { headers, signal, redirect: 'follow' });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new RegistryUnreachableError(text, host, networkDetail(error), { cause: error });
    }
  }

  /** Gets a token from the challenge's realm (token.md "Requesting a Token") and caches it for `tokenKey`. */
  private async fetchToken(
    text: string,
    host: string,
    params: Record<string, string>,
    scope: string,
    tokenKey: string,
    credentials: RegistryCredentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    let realm: URL;
    try {
      realm = new URL(params.realm!);
    } catch (error) {
      throw new RegistryUnauthorizedError(text, host, `invalid token realm "${params.realm}"`, { cause: error });
    }
    const realmInsecureOk =
      isLoopbackHost(realm.host) || isLoopbackHost(host) || (this.config.insecureRegistries ?? []).includes(realm.host);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && realmInsecureOk)) {
      throw new RegistryUnauthorizedError(text, host, `token realm ${realm.origin} is not HTTPS`);
    }
    if (params.service) realm.searchParams.set('service', params.service);
    for (const item of (params.scope ?? scope).split(' ')) if (item) realm.searchParams.append('scope', item);
    const headers: Record<string, string> = credentials ? { authorization: basicAuth(credentials) } : {};
    const response = await this.send(text, realm.host, realm.toString(), headers, signal);
    const body = await response.text().catch(() => '');
    if (response.status === 401 || response.status === 403)
      throw new RegistryUnauthorizedError(text, host, `token server ${realm.host}: ${registryErrorDetail(body) || response.statusText}`);
    if (!response.ok)
      throw new RegistryError(
        text,
        realm.host,
        response.status,
        `token request failed: ${registryErrorDetail(body) || response.statusText}`,
      );
    let document: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      document = JSON.parse(body) as typeof document;
    } catch (error) {
      throw new RegistryUnauthorizedError(text, host, 'token response is not JSON', { cause: error });
    }
    const token =
      typeof document.token === 'string' ? document.token : typeof document.access_token === 'string' ? document.access_token : undefined;
    if (!token) throw new RegistryUnauthorizedError(text, host, 'token response has no token');
    const seconds = typeof document.expires_in === 'number' && document.expires_in > 0 ? document.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renew a little early so a token does not expire between our check and the registry's.
    this.tokens.set(tokenKey, { token, expiresAtMs: Date.now() + Math.max(1, seconds - 5) * 1000 });
    this.logger.debug({ host, scope, expiresInSeconds: seconds }, 'registry token obtained');
  }
}

function basicAuth(credentials: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
}

/** The algorithm of a digest (`sha256` | `sha512`), as node:crypto names it. */
export function digestAlgorithm(digest: string): 'sha256' | 'sha512' {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

function verifyBytes(text: string, digest: string, bytes: Buffer, what: string): void {
  const algorithm = digestAlgorithm(digest);
  const actual = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
  if (actual !== digest) throw new DigestMismatchError(text, digest, actual, what);
}

async function readLimited(text: string, response: Response, limit: number): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > limit) throw new InvalidImageError(text, `document of ${declared} bytes exceeds ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  if (!response.body) return Buffer.alloc(0);
  for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > limit) throw new InvalidImageError(text, `document exceeds ${limit} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** `code: message` of a distribution-spec error body (`{"errors":[{code,message}]}`), or ''. */
function registryErrorDetail(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
    return (parsed.errors ?? []).map((item) => [item.code, item.message].filter(Boolean).join(': ')).join('; ');
  } catch {
    return body.slice(0, 200).trim();
  }
}

function networkDetail(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return cause?.message ?? errorMessage(error);
}
