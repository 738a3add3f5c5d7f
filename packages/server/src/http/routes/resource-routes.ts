// The REST routes of the five kinds: each kind's strategy wired into the generic routes, then the kinds' actions.
import type { Kind } from '@warren/api';
import type { FastifyInstance } from 'fastify';
import type { RouteContext } from './context.js';
import { environmentClassStrategy } from './environment-classes.js';
import { environmentStrategy } from './environments.js';
import { registerKindRoutes } from './kind-routes.js';
import { runnerStrategy } from './runners.js';
import type { KindStrategyFactory } from './strategy.js';
import { tokenStrategy } from './tokens.js';
import { userStrategy } from './users.js';

/** One strategy per kind (the mapped type makes a missing kind a compile error), in URL order. */
const STRATEGIES: { [K in Kind]: KindStrategyFactory<K> } = {
  Environment: environmentStrategy,
  Runner: runnerStrategy,
  EnvironmentClass: environmentClassStrategy,
  User: userStrategy,
  Token: tokenStrategy,
};

/**
 * Registers every resource route on `app`.
 * Paths: `/api/v1/{plural}` (GET list|watch, POST), `/api/v1/{plural}/{id}` (GET, PATCH, DELETE),
 * `PUT /api/v1/{environments,runners}/{id}/status`, `POST /api/v1/environments/{id}/{keepalive,access}`.
 * `{id}` is an id or a name.
 */
export function registerResourceRoutes(app: FastifyInstance, context: RouteContext): void {
  const strategies = [
    STRATEGIES.Environment(context),
    STRATEGIES.Runner(context),
    STRATEGIES.EnvironmentClass(context),
    STRATEGIES.User(context),
    STRATEGIES.Token(context),
  ];
  for (const strategy of strategies) registerKindRoutes(app, context, strategy);
  for (const strategy of strategies) strategy.registerActions?.(app);
}
