// Typed HTTP + watch client for the Warren API, used by the runner, the CLI and (later) the web UI.
// Uses the platform's fetch; no node:* imports.
import { ApiError, StatusSchema, makeStatus, type Status } from './status.js';
import { AccessGrantSchema, type AccessGrant } from './access.js';
import {
  KINDS,
  type Environment,
  type EnvironmentClass,
  type EnvironmentClassCreate,
  type EnvironmentCreate,
  type EnvironmentPatch,
  type EnvironmentStatus,
  type Kind,
  type ResourceByKind,
  type ResourceList,
  type Runner,
  type RunnerCreate,
  type RunnerStatus,
  type Token,
  type TokenCreate,
  type User,
  type UserCreate,
  type WatchEvent,
} from './resources.js';

/** Options for {@link WarrenClient}. */
export interface ClientOptions {
  /** Server base URL, e.g. `http://127.0.0.1:7080`. */
  server: string;
  /** Bearer token (personal access token or runner token). */
  token?: string;
  /** Injected fetch (tests); defaults to the global one. */
  fetch?: typeof fetch;
  /** Per-request timeout in milliseconds for non-watch calls (default 30 000). */
  timeoutMs?: number;
}

/** Query options of list and watch calls. */
export interface ListOptions {
  /** Environments only: only those scheduled to this runner. */
  runnerId?: string;
  /** `key=value` label selector, comma-separated. */
  labelSelector?: string;
  signal?: AbortSignal;
}

/** Options of {@link WarrenClient.watch}. */
export interface WatchOptions extends ListOptions {
  /** Resume after this resourceVersion; events newer than it are replayed first. */
  resourceVersion?: string;
}

/**
 * A client for one server and one principal.
 * Every method throws {@link ApiError} (carrying the Status envelope) when the server answers with an
 * error, and an ApiError with reason `ServiceUnavailable` when the server cannot be reached.
 */
export class WarrenClient {
  readonly server: string;
  private readonly token: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions) {
    this.server = options.server.replace(/\/+$/, '');
    this.token = options.token;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * Sends one request to `path` (relative to the server, e.g. `/api/v1/environments`) and returns the parsed JSON.
   * @throws {ApiError} on a non-2xx answer or when the server is unreachable.
   */
  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const response = await this.send(method, path, body, signal ?? AbortSignal.timeout(this.timeoutMs));
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  private async send(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.server}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (signal?.aborted && (signal.reason as Error | undefined)?.name !== 'TimeoutError') throw error;
      const reason = (error as Error).name === 'TimeoutError' ? 'Timeout' : 'ServiceUnavailable';
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new ApiError(makeStatus(reason, `cannot reach the Warren server at ${this.server}: ${cause}`));
    }
    if (!response.ok) throw new ApiError(await readStatus(response));
    return response;
  }

  // ------------------------------------------------------------ generic resource calls

  /** `GET /api/v1/<plural>`: every object of `kind` the principal may see. */
  list<K extends Kind>(kind: K, options: ListOptions = {}): Promise<ResourceList<ResourceByKind[K]>> {
    return this.request('GET', `/api/v1/${KINDS[kind]}${query(options)}`, undefined, options.signal);
  }

  /** `GET /api/v1/<plural>/{idOrName}`. @throws {ApiError} 404 `NotFound`. */
  get<K extends Kind>(kind: K, idOrName: string): Promise<ResourceByKind[K]> {
    return this.request('GET', `/api/v1/${KINDS[kind]}/${encodeURIComponent(idOrName)}`);
  }

  /** `DELETE /api/v1/<plural>/{idOrName}`; returns the object as it is after the request (may be marked for deletion). */
  delete<K extends Kind>(kind: K, idOrName: string): Promise<ResourceByKind[K]> {
    return this.request('DELETE', `/api/v1/${KINDS[kind]}/${encodeURIComponent(idOrName)}`);
  }

  /** `PATCH /api/v1/<plural>/{idOrName}` with a JSON merge patch (RFC 7396). @throws {ApiError} 409 on a stale resourceVersion. */
  patch<K extends Kind>(kind: K, idOrName: string, patch: unknown): Promise<ResourceByKind[K]> {
    return this.request('PATCH', `/api/v1/${KINDS[kind]}/${encodeURIComponent(idOrName)}`, patch);
  }

  /**
   * Watches `kind` as a stream of events, starting after `options.resourceVersion` (or from "now" with the
   * current objects replayed as ADDED when omitted). Ends when the server closes the stream or the signal aborts.
   * @throws {ApiError} 410 `Gone` when the resourceVersion is older than the server's event history: list again.
   */
  async *watch<K extends Kind>(kind: K, options: WatchOptions = {}): AsyncGenerator<WatchEvent<ResourceByKind[K]>> {
    const response = await this.send('GET', `/api/v1/${KINDS[kind]}${query({ ...options, watch: 'true' })}`, undefined, options.signal);
    if (!response.body) return;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let newline: number;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (!line) continue;
          const event = JSON.parse(line) as WatchEvent<ResourceByKind[K]> | { type: 'ERROR'; object: Status };
          if (event.type === 'ERROR') throw new ApiError(event.object);
          yield event;
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  }

  // ------------------------------------------------------------ typed conveniences

  /** `POST /api/v1/environments`. @throws {ApiError} 422 naming the field, 409 `AlreadyExists` on a duplicate name. */
  createEnvironment(body: EnvironmentCreate): Promise<Environment> {
    return this.request('POST', '/api/v1/environments', body);
  }

  /** Sets `spec.desiredPhase` (start = Running, stop = Stopped). */
  setDesiredPhase(idOrName: string, desiredPhase: 'Running' | 'Stopped'): Promise<Environment> {
    const patch: EnvironmentPatch = { spec: { desiredPhase } };
    return this.patch('Environment', idOrName, patch);
  }

  /** `PUT /api/v1/environments/{id}/status` (runners and controllers only). @throws {ApiError} 409 on a stale resourceVersion. */
  updateEnvironmentStatus(id: string, status: EnvironmentStatus, resourceVersion?: string): Promise<Environment> {
    return this.request('PUT', `/api/v1/environments/${encodeURIComponent(id)}/status`, {
      ...(resourceVersion ? { metadata: { resourceVersion } } : {}),
      status,
    });
  }

  /** `POST /api/v1/environments/{id}/access`: a short-lived token for the runner's access API. */
  async createAccessGrant(idOrName: string): Promise<AccessGrant> {
    const grant = await this.request('POST', `/api/v1/environments/${encodeURIComponent(idOrName)}/access`, {});
    return AccessGrantSchema.parse(grant);
  }

  /** `POST /api/v1/environments/{id}/keepalive`: records activity now. */
  keepalive(idOrName: string): Promise<Environment> {
    return this.request('POST', `/api/v1/environments/${encodeURIComponent(idOrName)}/keepalive`, {});
  }

  /** `POST /api/v1/runners`. */
  createRunner(body: RunnerCreate): Promise<Runner> {
    return this.request('POST', '/api/v1/runners', body);
  }

  /** `PUT /api/v1/runners/{id}/status` (the runner itself: heartbeat). */
  updateRunnerStatus(id: string, status: RunnerStatus): Promise<Runner> {
    return this.request('PUT', `/api/v1/runners/${encodeURIComponent(id)}/status`, { status });
  }

  /** `POST /api/v1/environmentclasses` (admins). */
  createEnvironmentClass(body: EnvironmentClassCreate): Promise<EnvironmentClass> {
    return this.request('POST', '/api/v1/environmentclasses', body);
  }

  /** `POST /api/v1/users` (admins). */
  createUser(body: UserCreate): Promise<User> {
    return this.request('POST', '/api/v1/users', body);
  }

  /** `POST /api/v1/tokens`: the response's `status.secret` is the only time the secret is shown. */
  createToken(body: TokenCreate): Promise<Token> {
    return this.request('POST', '/api/v1/tokens', body);
  }

  /** `GET /api/v1/whoami`: the calling principal. */
  whoami(): Promise<{ kind: 'User' | 'Runner'; id: string; name: string; admin: boolean }> {
    return this.request('GET', '/api/v1/whoami');
  }
}

function query(options: object): string {
  const params = new URLSearchParams();
  for (const key of ['watch', 'resourceVersion', 'runnerId', 'labelSelector']) {
    const value = (options as Record<string, unknown>)[key];
    if (typeof value === 'string' && value !== '') params.set(key, value);
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** Reads a Status envelope from an error response, or synthesises one when the body is not a Status. */
async function readStatus(response: Response): Promise<Status> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = StatusSchema.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data;
  } catch {
    // not JSON: fall through
  }
  return makeStatus(
    response.status === 404 ? 'NotFound' : 'InternalError',
    `server answered HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
    undefined,
    response.status,
  );
}
