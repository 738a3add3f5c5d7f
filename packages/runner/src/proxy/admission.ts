// The port proxy's admission: which environment and port a request may reach, decided per request from its Host
// (or path form), Warren's session cookie or a port token, the port's visibility (Owner/Public) and the
// environment's phase. One set of rules for the slow path, the Node fast path and the native front's questions.
import type { IncomingMessage } from 'node:http';
import { type Environment, PORT_TOKEN_PARAMETER } from '@warren/api';
import { WarrenError } from '@warren/base';
import type { PortTokenVerifier } from '../access/index.js';
import type { EnvironmentNetwork } from '../environment/index.js';
import type { RelayAdmission } from './relay.js';
import type { RequestHead } from './request-head.js';
import { parseProxyRoute, queryParameter, withoutQueryParameter, type ProxyRoute } from './route.js';
import { SESSION_COOKIE, type SessionSigner, sessionSetCookie, takeSessionCookies } from './session.js';

/** A refusal answered before anything is forwarded (`reason` and HTTP `code` as the proxy answers them). */
export class ProxyError extends WarrenError {}

/** The part of a route that auth depends on. */
export type RouteTarget = Pick<ProxyRoute, 'environment' | 'port'>;

/** The environment and address a request is allowed to reach, or the redirect of a token exchange. */
export type Decision =
  | {
      kind: 'forward';
      environment: Environment;
      network: EnvironmentNetwork;
      /** The Cookie value without Warren's cookie; undefined drops the field. */
      cookieRest: string | undefined;
    }
  | { kind: 'redirect'; location: string; setCookie: string };

/** Options of {@link ProxyAdmission}. */
export interface ProxyAdmissionOptions {
  /** Domain of the host form `<port>-<env>.<domain>`, lower case. */
  domain: string;
  /** The environments of this runner, freshest known objects. */
  environments: () => Environment[];
  /** Where a running environment is reachable (cached, targets.ts); undefined when not running. */
  network: (environmentId: string) => Promise<EnvironmentNetwork | undefined>;
  verifyToken: PortTokenVerifier;
  sessions: SessionSigner;
  /** Lifetime of the session cookie a token exchange sets, in seconds. */
  sessionSeconds: number;
  /** Mark the cookie `Secure`. */
  secureCookies: boolean;
  now: () => Date;
}

/** Decides what a request may reach; see the file header. */
export class ProxyAdmission {
  // The route of each Host seen on the fast path (null: not the host form): it depends on nothing else.
  private readonly hostRoutes = new Map<string, RouteTarget | null>();

  constructor(private readonly options: ProxyAdmissionOptions) {}

  /**
   * The slow path's decision for a request: a port token in the query (`?warren-token=`) is verified and, except on
   * an upgrade, exchanged for the session cookie by a redirect to the same URL without it; else the session cookie
   * or the port's visibility decides, as in {@link admitted}.
   * @throws {ProxyError} 404 `NotFound`, 403 `Forbidden` (a token of another environment or port), 409 `Conflict`,
   *   401 `Unauthorized`, 503 `ServiceUnavailable` (not Running, or not running on this runner).
   * @throws {AccessDeniedError} for a bad, expired or another runner's token.
   */
  async decide(request: IncomingMessage, route: ProxyRoute, upgrade: boolean): Promise<Decision> {
    const candidates = this.candidatesOf(route);
    const { values, rest } = takeSessionCookies(request.headers.cookie);

    let granted: Environment | undefined;
    const token = queryParameter(request.url ?? '/', PORT_TOKEN_PARAMETER);
    if (token !== undefined) {
      const claims = await this.options.verifyToken(token);
      granted = candidates.find((candidate) => candidate.metadata.id === claims.environmentId);
      if (!granted) throw new ProxyError('Forbidden', 403, `the port token does not grant access to environment "${route.environment}"`);
      if (claims.port !== 0 && claims.port !== route.port)
        throw new ProxyError('Forbidden', 403, `the port token grants port ${claims.port}, not ${route.port}`);
      if (!upgrade) {
        const expiresAt = Math.floor(this.options.now().getTime() / 1000) + this.options.sessionSeconds;
        const value = this.options.sessions.sign({
          userId: claims.userId,
          environmentId: claims.environmentId,
          port: claims.port,
          expiresAt,
        });
        return {
          kind: 'redirect',
          location: withoutQueryParameter(request.url ?? '/', PORT_TOKEN_PARAMETER),
          setCookie: sessionSetCookie(value, route.cookiePath, this.options.sessionSeconds, this.options.secureCookies),
        };
      }
    }
    const environment = this.admitted(route, candidates, token === undefined ? values : [], granted);
    const network = await this.options.network(environment.metadata.id);
    if (!network) throw new ProxyError('ServiceUnavailable', 503, `environment "${route.environment}" is not running on this runner`);
    return { kind: 'forward', environment, network, cookieRest: rest };
  }

  /**
   * The environment and port a host-form request may reach with these session cookie values: the route and auth
   * checks of {@link decide} for a request without a port token (the Node fast path's and the native front's).
   * @returns undefined for the path form (or no route) and every refusal.
   */
  admitHost(host: string, sessionValues: string[]): { environmentId: string; port: number } | undefined {
    let route = this.hostRoutes.get(host);
    if (route === undefined) {
      const parsed = parseProxyRoute(host, '/', this.options.domain);
      route = parsed?.form === 'host' ? { environment: parsed.environment, port: parsed.port } : null;
      if (this.hostRoutes.size >= 1024) this.hostRoutes.clear();
      this.hostRoutes.set(host, route);
    }
    if (route === null) return undefined;
    try {
      return { environmentId: this.admitted(route, this.candidatesOf(route), sessionValues, undefined).metadata.id, port: route.port };
    } catch (error) {
      if (error instanceof ProxyError) return undefined;
      throw error;
    }
  }

  /**
   * The Node fast path's admission of a request (relay.ts): {@link admitHost}, and no port token in the query.
   * @returns undefined (slow path) for the path form, a port token in the query, and every refusal.
   */
  admitFast(head: RequestHead): RelayAdmission | undefined {
    if (head.target.includes('?') && queryParameter(head.target, PORT_TOKEN_PARAMETER) !== undefined) return undefined;
    // Only a Cookie field that names Warren's cookie is split (and then rewritten); others reach the app as sent.
    const session = head.cookie?.includes(SESSION_COOKIE) ? takeSessionCookies(head.cookie) : undefined;
    const admission = this.admitHost(head.host, session?.values ?? []);
    if (admission === undefined) return undefined;
    return { ...admission, stripCookie: session !== undefined, cookie: session?.rest };
  }

  /**
   * The environments a route names (by id or name).
   * @throws {ProxyError} 404 `NotFound` for a port outside 1-65535 or when no environment of this runner matches.
   */
  private candidatesOf(route: RouteTarget): Environment[] {
    if (!Number.isInteger(route.port) || route.port < 1 || route.port > 65535) {
      throw new ProxyError('NotFound', 404, `port ${route.port} is outside 1-65535`);
    }
    const candidates = this.options
      .environments()
      .filter((environment) => environment.metadata.id === route.environment || environment.metadata.name === route.environment);
    if (candidates.length === 0) throw new ProxyError('NotFound', 404, `environment "${route.environment}" is not on this runner`);
    return candidates;
  }

  /**
   * The environment a request may reach: `granted` (by a port token), else the first candidate a valid session
   * value grants for this port, else the candidate whose port is Public; it must be Running.
   * @param sessionValues values of Warren's cookie in the request (none when it carries a token).
   * @throws {ProxyError} 409 `Conflict` for several Public candidates, 401 `Unauthorized` for none,
   *   503 `ServiceUnavailable` when the environment is not Running.
   */
  private admitted(route: RouteTarget, candidates: Environment[], sessionValues: string[], granted: Environment | undefined): Environment {
    let environment = granted;
    if (!environment && sessionValues.length > 0) {
      const nowSeconds = Math.floor(this.options.now().getTime() / 1000);
      for (const value of sessionValues) {
        const session = this.options.sessions.verify(value, nowSeconds);
        if (!session || (session.port !== 0 && session.port !== route.port)) continue;
        environment = candidates.find((candidate) => candidate.metadata.id === session.environmentId);
        if (environment) break;
      }
    }
    if (!environment) {
      const isPublic = candidates.filter((candidate) =>
        candidate.spec.ports.some((entry) => entry.port === route.port && entry.visibility === 'Public'),
      );
      if (isPublic.length > 1)
        throw new ProxyError('Conflict', 409, `several environments are named "${route.environment}"; address it by id`);
      environment = isPublic[0];
    }
    if (!environment) {
      throw new ProxyError(
        'Unauthorized',
        401,
        `port ${route.port} of environment "${route.environment}" is private: run "warren ports open ${route.environment} ${route.port}"`,
      );
    }
    if (environment.status.phase !== 'Running') {
      throw new ProxyError('ServiceUnavailable', 503, `environment "${route.environment}" is ${environment.status.phase}, not Running`);
    }
    return environment;
  }
}
