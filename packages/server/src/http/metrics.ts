// The control plane's Prometheus endpoint, GET /metrics: requests by route and code with their durations, open
// watch streams, environments and runners by phase (counted from the store at scrape time), process metrics.
// Who may scrape: an admin user's token, or the metrics token of the server's options (docs/design/0014).
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ForbiddenError } from '../auth/index.js';
import type { RouteContext } from './routes/index.js';

/** Options of {@link registerMetricsRoute}. */
export interface ServerMetricsOptions {
  /**
   * A static bearer token for scrapers (`WARREN_METRICS_TOKEN`, a long random string); without one only admin
   * users may scrape. It is checked before the normal token lookup and grants `/metrics` and nothing else.
   */
  token?: string;
  /** Add prom-client's default process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
}

/** The path of the endpoint. */
export const METRICS_PATH = '/metrics';

/**
 * Whether `request` is a scrape of {@link METRICS_PATH} carrying the configured metrics token (compared in
 * constant time). The app's authentication hook lets such requests through without looking the token up.
 */
export function isMetricsTokenScrape(request: FastifyRequest, token: string | undefined): boolean {
  if (token === undefined || request.routeOptions.url !== METRICS_PATH) return false;
  const header = request.headers.authorization;
  const given = Buffer.from(header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : '');
  const wanted = Buffer.from(token);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/**
 * Registers `GET /metrics` and the request hook that counts every request, on a registry of its own (several
 * apps may live in one process, e.g. in tests). Series: `warren_http_requests_total{method,route,code}`,
 * `warren_http_request_duration_seconds{method,route,code}` (route = the route's URL pattern, `unmatched` for
 * 404s; watch streams count when they end), `warren_watch_streams_open`, `warren_environments{phase}`,
 * `warren_runners{phase}`, and the default process metrics.
 * @returns the registry (tests).
 */
export function registerMetricsRoute(app: FastifyInstance, context: RouteContext, options: ServerMetricsOptions = {}): Registry {
  const registry = new Registry();
  const registers = [registry];
  const labelNames = ['method', 'route', 'code'] as const;
  const requests = new Counter({ name: 'warren_http_requests_total', help: 'HTTP requests answered.', labelNames, registers });
  const durations = new Histogram({
    name: 'warren_http_request_duration_seconds',
    help: 'Time to answer HTTP requests (watch streams: until they end).',
    labelNames,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers,
  });
  new Gauge({
    name: 'warren_watch_streams_open',
    help: 'Watch streams currently open.',
    registers,
    collect() {
      this.set(context.activeWatches.size);
    },
  });
  const environments = new Gauge({ name: 'warren_environments', help: 'Environments by phase.', labelNames: ['phase'], registers });
  const runners = new Gauge({ name: 'warren_runners', help: 'Runners by phase.', labelNames: ['phase'], registers });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  app.addHook('onResponse', async (request, reply) => {
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', code: String(reply.statusCode) };
    requests.inc(labels);
    durations.observe(labels, reply.elapsedTime / 1000);
  });

  app.get(METRICS_PATH, async (request, reply) => {
    if (!isMetricsTokenScrape(request, options.token)) {
      const principal = context.principalOf(request);
      if (principal.kind !== 'User' || !principal.admin) throw new ForbiddenError('/metrics is for admin users and the metrics token');
    }
    const [environmentList, runnerList] = await Promise.all([context.store.list('Environment'), context.store.list('Runner')]);
    environments.reset();
    for (const environment of environmentList.items) environments.inc({ phase: environment.status.phase });
    runners.reset();
    for (const runner of runnerList.items) runners.inc({ phase: runner.status.phase });
    const body = await registry.metrics();
    return reply.header('cache-control', 'no-store').type(registry.contentType).send(body);
  });
  return registry;
}
