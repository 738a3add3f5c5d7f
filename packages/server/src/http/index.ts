// The server's HTTP folder: the Fastify app (REST API + watch, one route strategy per kind in routes/) and its
// OpenAPI document.
export { buildApp } from './app.js';
export type { AppOptions, BuildAppOptions } from './app.js';
export { buildOpenApiDocument } from './openapi.js';
export type { ServerMetricsOptions } from './metrics.js';
