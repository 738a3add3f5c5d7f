// The resource routes of the HTTP API, one strategy per kind (see resource-routes.ts), and the state routes share.
export { registerResourceRoutes } from './resource-routes.js';
export { generateEnvironmentName } from './environments.js';
export type { RouteContext, RouteOptions } from './context.js';
