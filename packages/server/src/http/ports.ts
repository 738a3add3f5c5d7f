// Port URLs: `POST /api/v1/environments/{id}/ports/{port}/open` gives the owner (or an admin) the port's URL on
// its runner's proxy with a short-lived, audience-bound token that the proxy exchanges for its cookie.
// Making a port Public or Owner is a PATCH of spec.ports (routes/kind-routes.ts).
import { type Environment, PORT_TOKEN_PARAMETER, type PortOpen, portUrl } from '@warren/api';
import { ConflictError, InvalidError, NotFoundError } from '@warren/base';
import type { FastifyInstance } from 'fastify';
import { type Principal, authorize, signPortToken } from '../auth/index.js';
import type { RouteContext } from './routes/index.js';

/**
 * Registers `POST /api/v1/environments/{id}/ports/{port}/open` (id or name; owner or admin only).
 * @throws (as Status) 422 `Invalid` for a port outside 1-65535; 404 for an environment the caller cannot see;
 *   409 `Conflict` when the environment has no runner yet, its runner publishes no proxy, or the name is ambiguous.
 */
export function registerPortRoutes(app: FastifyInstance, context: RouteContext): void {
  app.post<{ Params: { id: string; port: string } }>('/api/v1/environments/:id/ports/:port/open', async (request): Promise<PortOpen> => {
    const principal = context.principalOf(request);
    const port = Number(request.params.port);
    if (!/^[0-9]{1,5}$/.test(request.params.port) || port < 1 || port > 65535) {
      throw new InvalidError(`port must be an integer in 1-65535, got "${request.params.port}"`, [
        { field: 'port', message: 'out of range' },
      ]);
    }
    const environment = await findEnvironment(context, principal, request.params.id);
    authorize(principal, 'access', 'Environment', environment);
    const runnerId = environment.status.runnerId;
    if (runnerId === undefined) throw new ConflictError(`environment "${environment.metadata.name}" is not scheduled to a runner yet`);
    const runner = await context.store.get('Runner', runnerId);
    const endpoint = runner?.status.endpoints.proxy;
    if (!endpoint) throw new ConflictError(`the runner of environment "${environment.metadata.name}" publishes no port proxy`);
    const userId = principal.kind === 'User' ? principal.userId : principal.ownerId;
    const signed = await signPortToken(
      context.signingKeys,
      { runnerId, userId, environmentId: environment.metadata.id, port },
      { ttlSeconds: context.options.accessTokenTtlSeconds, now: context.options.now() },
    );
    const url = `${portUrl(endpoint, environment.metadata.name, port)}?${PORT_TOKEN_PARAMETER}=${encodeURIComponent(signed.token)}`;
    return { url, expiresTime: signed.expiresTime };
  });
}

/** An environment by id, else by name: the caller's own first (names are unique per owner only). */
async function findEnvironment(context: RouteContext, principal: Principal, idOrName: string): Promise<Environment> {
  const byId = await context.store.get('Environment', idOrName);
  if (byId) return byId;
  const candidates = await context.store.getByName('Environment', idOrName);
  const ownerId = principal.kind === 'User' ? principal.userId : principal.ownerId;
  const owned = candidates.filter((candidate) => candidate.metadata.ownerId === ownerId);
  if (owned.length === 1 && owned[0]) return owned[0];
  const admin = principal.kind === 'User' && principal.admin;
  if (admin && candidates.length === 1 && candidates[0]) return candidates[0];
  if (admin && candidates.length > 1) throw new ConflictError(`several environments are named "${idOrName}"; address it by id`);
  throw new NotFoundError('Environment', idOrName);
}
