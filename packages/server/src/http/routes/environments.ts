// Environments: create (class and git URL checked, a generated name when none is given), patch rules, the status
// merge that keeps the scheduler's runnerId, the two-step DELETE, and the keepalive and access actions.
import { EnvironmentStatusSchema, KINDS, repositoryBasename, validateGitUrl, type AccessGrant, type Environment } from '@warren/api';
import { ConflictError, InvalidError, NotFoundError } from '@warren/base';
import type { FastifyInstance } from 'fastify';
import { ForbiddenError, type Principal, authorize, randomSuffix, signAccessToken } from '../../auth/index.js';
import type { ResourceStore } from '../../storage/index.js';
import { parseOrThrow } from '../errors.js';
import { isJsonObject } from '../merge-patch.js';
import { KIND_SCHEMAS } from '../schemas.js';
import type { RouteContext } from './context.js';
import { resolveObject } from './lookup.js';
import { JSON_ONLY, requireContentType, type Body } from './request.js';
import { createNamed, isReason, ownerIdOf, type KindStrategy } from './strategy.js';

/** A name for an environment created without one: the repository basename as a DNS label plus 5 random chars. */
export function generateEnvironmentName(url: string): string {
  const base = repositoryBasename(url)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 57)
    .replace(/-+$/, '');
  return `${base || 'environment'}-${randomSuffix()}`;
}

/** @throws {InvalidError} 422 `InvalidGitUrl` naming `spec.source.git.url` when `url` fails {@link validateGitUrl}. */
function checkGitUrl(url: string): void {
  const problem = validateGitUrl(url);
  if (problem !== undefined) {
    throw new InvalidError(`spec.source.git.url ${problem}`, [{ field: 'spec.source.git.url', message: problem }], 'InvalidGitUrl', 422);
  }
}

/** @throws {InvalidError} naming `spec.className` when no environment class has that name. */
async function requireClass(store: ResourceStore, className: string): Promise<void> {
  const classes = await store.getByName('EnvironmentClass', className);
  if (classes.length === 0) {
    throw new InvalidError(`environment class "${className}" does not exist`, [
      { field: 'spec.className', message: `environment class "${className}" does not exist` },
    ]);
  }
}

/** Rules of an environment patch beyond the schema. */
function checkEnvironmentUpdate(current: Environment, spec: Environment['spec']): void {
  if (current.metadata.deletionTime !== undefined) {
    throw new ConflictError(`environment "${current.metadata.name}" is being deleted`);
  }
  if (spec.desiredPhase === 'Deleted') {
    throw new InvalidError('use DELETE to delete an environment', [
      { field: 'spec.desiredPhase', message: 'must be Running or Stopped; use DELETE' },
    ]);
  }
  if (spec.source.git.url !== current.spec.source.git.url) checkGitUrl(spec.source.git.url);
}

/**
 * The status to store for a `PUT .../status`. A runner cannot move an environment to another runner (the
 * scheduler owns `status.runnerId`), an omitted runnerId keeps the current one, and `lastActivityTime` never goes
 * back, so a status written from a stale read does not undo a keepalive.
 * @throws {ForbiddenError} when a runner sets another runnerId.
 */
function mergeStatus(principal: Principal, current: Environment, next: Environment['status']): Environment['status'] {
  const status = { ...next };
  if (principal.kind === 'Runner' && status.runnerId !== undefined && status.runnerId !== current.status.runnerId) {
    throw new ForbiddenError('runners cannot change status.runnerId');
  }
  // An omitted runnerId keeps the current one: a status written without it must not unschedule the environment.
  if (status.runnerId === undefined && current.status.runnerId !== undefined) status.runnerId = current.status.runnerId;
  const previous = current.status.lastActivityTime;
  if (previous !== undefined && (status.lastActivityTime === undefined || Date.parse(status.lastActivityTime) < Date.parse(previous))) {
    status.lastActivityTime = previous;
  }
  return status;
}

/**
 * The strategy of Environments. Besides the generic routes: `POST /api/v1/environments/{id}/keepalive` and
 * `POST /api/v1/environments/{id}/access`.
 */
export function environmentStrategy(context: RouteContext): KindStrategy<'Environment'> {
  const { store } = context;
  const now = () => context.options.now();

  /**
   * DELETE of an environment: one never scheduled is removed at once; otherwise it gets `desiredPhase: Deleted`
   * and `metadata.deletionTime`, its runner removes every trace and then a controller removes the object.
   */
  async function deleteEnvironment(principal: Principal, object: Environment): Promise<Environment> {
    let current: Environment | undefined = object;
    for (let attempt = 0; attempt < 5 && current; attempt++) {
      if (current.status.runnerId === undefined) {
        try {
          return await store.delete('Environment', current.metadata.id, { expectedResourceVersion: current.metadata.resourceVersion });
        } catch (error) {
          if (!isReason(error, 'Conflict')) throw error;
          current = await store.get('Environment', object.metadata.id); // scheduled meanwhile: re-read, mark instead
          continue;
        }
      }
      const at = now().toISOString();
      return store.update('Environment', current.metadata.id, (latest) => {
        authorize(principal, 'delete', 'Environment', latest);
        if (latest.metadata.deletionTime !== undefined && latest.spec.desiredPhase === 'Deleted') return undefined;
        return {
          ...latest,
          metadata: { ...latest.metadata, deletionTime: latest.metadata.deletionTime ?? at },
          spec: { ...latest.spec, desiredPhase: 'Deleted' },
        };
      });
    }
    if (!current) throw new NotFoundError('Environment', object.metadata.name);
    throw new ConflictError(`environment "${object.metadata.name}" kept changing while being deleted; try again`);
  }

  return {
    kind: 'Environment',
    listByRunnerId: true,

    async create(principal: Principal, body: Body): Promise<Environment> {
      const input = parseOrThrow(KIND_SCHEMAS.Environment.create, body, 'environment') as {
        metadata: { name?: string; labels?: Record<string, string> };
        spec: Environment['spec'];
      };
      checkGitUrl(input.spec.source.git.url);
      if (input.spec.desiredPhase === 'Deleted') {
        throw new InvalidError('an environment cannot be created as Deleted', [
          { field: 'spec.desiredPhase', message: 'must be Running or Stopped' },
        ]);
      }
      await requireClass(store, input.spec.className);
      const status = EnvironmentStatusSchema.parse({ phase: 'Pending', conditions: [] });
      const ownerId = ownerIdOf(principal);
      return createNamed('Environment', input.metadata.name ?? (() => generateEnvironmentName(input.spec.source.git.url)), (name) =>
        store.create('Environment', { name, ownerId, labels: input.metadata.labels ?? {}, spec: input.spec, status }),
      );
    },

    async prepareUpdate(body: Body): Promise<void> {
      if (isJsonObject(body.spec) && typeof body.spec.className === 'string') await requireClass(store, body.spec.className);
    },

    validateUpdate: checkEnvironmentUpdate,
    mergeStatus,
    delete: deleteEnvironment,

    registerActions(app: FastifyInstance): void {
      app.post<{ Params: { id: string } }>(`/api/v1/${KINDS.Environment}/:id/keepalive`, async (request) => {
        requireContentType(request, JSON_ONLY);
        const principal = context.principalOf(request);
        const object = await resolveObject(store, principal, 'Environment', request.params.id, 'keepalive');
        const minAgeMs = context.options.keepaliveMinIntervalSeconds * 1000;
        const fresh = (environment: Environment, at: Date) => {
          const last = environment.status.lastActivityTime;
          return last !== undefined && at.getTime() - Date.parse(last) < minAgeMs;
        };
        const at = now();
        // Batched: activity reported less than keepaliveMinIntervalSeconds ago is not written again.
        if (fresh(object, at)) return object;
        return store.update('Environment', object.metadata.id, (current) => {
          authorize(principal, 'keepalive', 'Environment', current);
          if (fresh(current, at)) return undefined;
          return { ...current, status: { ...current.status, lastActivityTime: at.toISOString() } };
        });
      });

      app.post<{ Params: { id: string } }>(`/api/v1/${KINDS.Environment}/:id/access`, async (request) => {
        requireContentType(request, JSON_ONLY);
        const principal = context.principalOf(request);
        const environment = await resolveObject(store, principal, 'Environment', request.params.id, 'access');
        const runnerId = environment.status.runnerId;
        if (runnerId === undefined) {
          throw new ConflictError(`environment "${environment.metadata.name}" is not scheduled to a runner yet`);
        }
        const runner = await store.get('Runner', runnerId);
        const endpoint = runner?.status.endpoints.access;
        if (!runner || !endpoint) {
          throw new ConflictError(`the runner of environment "${environment.metadata.name}" has no access endpoint`);
        }
        const signed = await signAccessToken(
          context.signingKeys,
          { runnerId, userId: ownerIdOf(principal), environmentId: environment.metadata.id },
          { ttlSeconds: context.options.accessTokenTtlSeconds, now: now() },
        );
        const grant: AccessGrant = {
          token: signed.token,
          expiresTime: signed.expiresTime,
          endpoint,
          environmentId: environment.metadata.id,
        };
        return grant;
      });
    },
  };
}
