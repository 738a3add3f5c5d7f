// The Fastify application of the control plane: auth, error envelope, resource routes, OpenAPI.
import { randomUUID } from 'node:crypto';
import { errorMessage, type Logger } from '@warren/base';
import { makeStatus } from '@warren/api';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { ResourceStore } from '../storage/index.js';
import { UnauthorizedError, authenticate, jwks, type Principal, type SigningKeys } from '../auth/index.js';
import { statusFromError } from './errors.js';
import { buildOpenApiDocument } from './openapi.js';
import { registerResourceRoutes, type RouteContext } from './routes/index.js';
import type { Whoami } from './schemas.js';
import { registerSshRoutes } from './ssh.js';
import { registerPortRoutes } from './ports.js';
import { isMetricsTokenScrape, registerMetricsRoute, type ServerMetricsOptions } from './metrics.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated caller; undefined on anonymous routes without credentials. */
    principal: Principal | undefined;
  }
  interface FastifyInstance {
    /** Every route registered on the app (method upper-case, Fastify URL syntax), e.g. for the OpenAPI test. */
    warrenRoutes: () => Array<{ method: string; url: string }>;
  }
  interface FastifyContextConfig {
    /** Route may be called without credentials. */
    anonymous?: boolean;
  }
}

/** Tunables of {@link buildApp}; every field has a default. */
export interface AppOptions {
  /** Largest accepted request body in bytes (default 1 MiB); larger gives 413. */
  bodyLimitBytes?: number;
  /** Interval of BOOKMARK lines on idle watches, in ms (default 15 000). */
  watchBookmarkIntervalMs?: number;
  /** How long a watch waits for its first event before sending headers, in ms (default 500); see WatchTiming. */
  watchFirstEventGraceMs?: number;
  /** Keepalives within this many seconds of the stored `lastActivityTime` are not written (default 30). */
  keepaliveMinIntervalSeconds?: number;
  /** Lifetime of access tokens in seconds (default 300). */
  accessTokenTtlSeconds?: number;
  /** A token's `status.lastUsedTime` is rewritten at most this often, in seconds (default 60). */
  tokenLastUsedUpdateSeconds?: number;
  /** Clock (tests). */
  now?: () => Date;
  /** `GET /metrics`: who may scrape besides admin users, default process metrics (http/metrics.ts). */
  metrics?: ServerMetricsOptions;
}

/** Inputs of {@link buildApp}. */
export interface BuildAppOptions {
  store: ResourceStore;
  logger: Logger;
  /** From `loadSigningKeys(store)`. */
  signingKeys: SigningKeys;
  options?: AppOptions;
}

const ONE_MIB = 1024 * 1024;

/** Turns a Fastify route URL (`/a/:id`) into a regular expression matching concrete paths. */
function routePattern(url: string): RegExp {
  const escaped = url
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${escaped}/?$`);
}

/**
 * Builds the HTTP API (not yet listening): REST + JSON under `/api/v1` for environments, runners,
 * environmentclasses, users and tokens, watch streams, `/api/v1/{whoami,keys,openapi.json}`, `/healthz` and
 * `/metrics` (Prometheus; admin users or the metrics token).
 * Every error, including unknown routes (404), wrong methods (405), bad JSON (400), oversized bodies (413) and
 * unsupported content types (415), is answered with the Status envelope; unexpected errors are logged with the
 * request id and answered with a bare 500 `InternalError`.
 * Closing the app (`app.close()`) ends open watch streams.
 */
export function buildApp({ store, logger, signingKeys, options = {} }: BuildAppOptions): FastifyInstance {
  const log = logger.child({ component: 'http' });
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimitBytes ?? ONE_MIB,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    // Watches are long-lived: close() first ends them cleanly (preClose waits until their last bytes are flushed),
    // then closes every socket, so keep-alive connections of clients do not hold close() up.
    forceCloseConnections: true,
    routerOptions: { ignoreTrailingSlash: true },
  });
  const closing = new AbortController();
  const now = options.now ?? (() => new Date());

  app.decorateRequest('principal', undefined);

  // RFC 7396 bodies parse exactly like JSON (same limits, same prototype-poisoning protection).
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));

  // Routes known by method, for telling 405 from 404.
  const routes: Array<{ method: string; url: string; pattern: RegExp }> = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method: method.toUpperCase(), url: route.url, pattern: routePattern(route.url) });
  });
  app.decorate('warrenRoutes', () => routes.map(({ method, url }) => ({ method, url })));

  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    if (request.is404 || isMetricsTokenScrape(request, options.metrics?.token)) return;
    const header = request.headers.authorization;
    const anonymous = request.routeOptions.config.anonymous === true;
    if (anonymous && header === undefined) return;
    const principal = await authenticate(store, header, {
      now: now(),
      lastUsedUpdateSeconds: options.tokenLastUsedUpdateSeconds ?? 60,
      onLastUsedError: (error) => log.warn({ requestId: request.id, error: errorMessage(error) }, 'could not record token use'),
    });
    if (!principal && !anonymous) throw new UnauthorizedError('this endpoint needs a bearer token (Authorization: Bearer <token>)');
    request.principal = principal;
  });

  app.setErrorHandler(async (error, request, reply) => {
    const { status, internal } = statusFromError(error, request.id);
    if (internal) {
      log.error(
        { requestId: request.id, method: request.method, url: request.url, err: error, error: errorMessage(error) },
        'request failed',
      );
    }
    if (status.code === 401) void reply.header('www-authenticate', 'Bearer realm="warren"');
    return reply.code(status.code).type('application/json; charset=utf-8').send(status);
  });

  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0] ?? request.url;
    const allowed = [...new Set(routes.filter((route) => route.pattern.test(path)).map((route) => route.method))];
    if (allowed.length > 0) {
      void reply.header('allow', allowed.join(', '));
      return reply
        .code(405)
        .send(makeStatus('MethodNotAllowed', `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`));
    }
    return reply.code(404).send(makeStatus('NotFound', `no route ${request.method} ${path}`));
  });

  app.addHook('onResponse', async (request, reply) => {
    log.debug(
      {
        requestId: request.id,
        method: request.method,
        url: request.url,
        statusCode: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime),
      },
      'request',
    );
  });

  const activeWatches = new Set<Promise<void>>();
  app.addHook('preClose', async () => {
    closing.abort();
    await Promise.allSettled([...activeWatches]);
  });

  const principalOf = (request: FastifyRequest): Principal => {
    if (!request.principal) throw new UnauthorizedError('this endpoint needs a bearer token');
    return request.principal;
  };

  const context: RouteContext = {
    store,
    logger: log,
    signingKeys,
    closing: closing.signal,
    activeWatches,
    principalOf,
    options: {
      watch: {
        bookmarkIntervalMs: options.watchBookmarkIntervalMs ?? 15_000,
        firstEventGraceMs: options.watchFirstEventGraceMs ?? 500,
      },
      keepaliveMinIntervalSeconds: options.keepaliveMinIntervalSeconds ?? 30,
      accessTokenTtlSeconds: options.accessTokenTtlSeconds ?? 300,
      now,
    },
  };

  app.get('/healthz', { config: { anonymous: true } }, () => Promise.resolve({ status: 'ok' }));

  let openapi: Record<string, unknown> | undefined;
  app.get('/api/v1/openapi.json', { config: { anonymous: true } }, () => Promise.resolve((openapi ??= buildOpenApiDocument())));

  app.get('/api/v1/keys', { config: { anonymous: true } }, () => Promise.resolve(jwks(signingKeys)));

  app.get('/api/v1/whoami', (request): Promise<Whoami> => {
    const principal = principalOf(request);
    if (principal.kind === 'User')
      return Promise.resolve({ kind: 'User', id: principal.userId, name: principal.name, admin: principal.admin });
    return Promise.resolve({ kind: 'Runner', id: principal.runnerId ?? '', name: principal.runnerName, admin: false });
  });

  registerResourceRoutes(app, context);
  registerSshRoutes(app, context);
  registerPortRoutes(app, context);
  registerMetricsRoute(app, context, options.metrics);
  return app;
}
