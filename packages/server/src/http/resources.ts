// REST routes of the five kinds: list/watch, get, create, patch (RFC 7396), delete, the status subresource,
// and the environment actions keepalive and access.
import { ConflictError, InvalidError, NotFoundError, WarrenError } from '@warren/base';
import {
  API_VERSION,
  EnvironmentStatusSchema,
  KINDS,
  LabelsSchema,
  RunnerStatusSchema,
  repositoryBasename,
  validateGitUrl,
  type AccessGrant,
  type Environment,
  type EnvironmentClass,
  type Kind,
  type Resource,
  type ResourceList,
  type Runner,
  type Token,
  type User,
} from '@warren/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from '@warren/base';
import type { ObjectFilter, ResourceStore } from '../storage/store.js';
import { authorize, listScope, type ListScope, type Verb } from '../auth/policy.js';
import { ForbiddenError, type Principal } from '../auth/principal.js';
import { signAccessToken, type SigningKeys } from '../auth/signing.js';
import { issueToken, redactToken } from '../auth/tokens.js';
import { randomSuffix } from '../auth/bootstrap.js';
import { parseOrThrow } from './errors.js';
import { applyMergePatch, isJsonObject, withoutNulls } from './merge-patch.js';
import { KIND_SCHEMAS } from './schemas.js';
import { serveWatch, type WatchTiming } from './watch.js';

/** Resolved options the routes need (see AppOptions in app.ts for meanings and defaults). */
export interface RouteOptions {
  watch: WatchTiming;
  keepaliveMinIntervalSeconds: number;
  accessTokenTtlSeconds: number;
  now: () => Date;
}

/** Shared state of the routes. */
export interface RouteContext {
  store: ResourceStore;
  logger: Logger;
  signingKeys: SigningKeys;
  options: RouteOptions;
  /** Aborted when the app closes: ends open watch streams. */
  closing: AbortSignal;
  /** Open watch streams; the app awaits them on close so their sockets are done before the server closes. */
  activeWatches: Set<Promise<void>>;
  /** Returns the authenticated principal of a request. @throws {UnauthorizedError} for anonymous requests. */
  principalOf: (request: FastifyRequest) => Principal;
}

type AnyObject = Resource;
type Body = Record<string, unknown>;

/** Shapes an object for the wire: token secrets are never returned except by the create call. */
function present(object: AnyObject): AnyObject {
  return object.kind === 'Token' ? redactToken(object) : object;
}

/** @throws {WarrenError} 400 BadRequest unless `body` is a JSON object. */
function requireObject(body: unknown): Body {
  if (!isJsonObject(body)) throw new InvalidError('request body must be a JSON object', [], 'BadRequest', 400);
  return body;
}

/** @throws {WarrenError} 415 when the request has a body whose media type is not one of `allowed`. */
function requireContentType(request: FastifyRequest, allowed: readonly string[]): void {
  const header = request.headers['content-type'];
  if (header === undefined) return;
  const type = header.split(';')[0]!.trim().toLowerCase();
  if (!allowed.includes(type)) {
    throw new WarrenError('UnsupportedMediaType', 415, `content type "${type}" is not accepted here; use ${allowed.join(' or ')}`);
  }
}

const JSON_ONLY = ['application/json'] as const;
const PATCH_TYPES = ['application/merge-patch+json', 'application/json'] as const;

/** Parses `a=b,c=d` (equality-based label selector, Kubernetes "Labels and Selectors"). */
function parseLabelSelector(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of value.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    const match = /^([^=!\s]+)==?([^=\s]*)$/.exec(trimmed);
    if (!match) {
      throw new InvalidError(`labelSelector "${value}" is invalid: use key=value[,key=value]`, [
        { field: 'labelSelector', message: 'must be key=value pairs separated by commas' },
      ]);
    }
    labels[match[1]!] = match[2]!;
  }
  return labels;
}

interface ListQuery {
  watch: boolean;
  resourceVersion: string | undefined;
  runnerId: string | undefined;
  labels: Record<string, string> | undefined;
}

function parseListQuery(query: unknown): ListQuery {
  const params: Record<string, unknown> = isJsonObject(query) ? query : {};
  const single = (name: string): string | undefined => {
    const value = params[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      throw new InvalidError(`query parameter ${name} is given more than once`, [{ field: name, message: 'must be given once' }]);
    }
    return value;
  };
  const watch = single('watch');
  if (watch !== undefined && !['true', 'false', '1', '0', ''].includes(watch)) {
    throw new InvalidError('query parameter watch must be true or false', [{ field: 'watch', message: 'must be true or false' }]);
  }
  const resourceVersion = single('resourceVersion');
  if (resourceVersion !== undefined && resourceVersion !== '' && !/^\d+$/.test(resourceVersion)) {
    throw new InvalidError('query parameter resourceVersion must be a decimal number', [
      { field: 'resourceVersion', message: 'must be a decimal resourceVersion' },
    ]);
  }
  const selector = single('labelSelector');
  const runnerId = single('runnerId');
  return {
    watch: watch === 'true' || watch === '1',
    resourceVersion: resourceVersion === '' ? undefined : resourceVersion,
    runnerId: runnerId === '' ? undefined : runnerId,
    labels: selector === undefined || selector === '' ? undefined : parseLabelSelector(selector),
  };
}

function listKind(kind: Kind): string {
  return `${kind}List`;
}

/** A stand-in object for authorizing a create before the object exists. */
function draft(kind: Kind, name: string, ownerId: string, spec: unknown): AnyObject {
  return {
    kind,
    apiVersion: API_VERSION,
    metadata: { id: '', name, generation: 0, resourceVersion: '0', createdTime: new Date(0).toISOString(), labels: {}, ownerId },
    spec,
    status: {},
  } as unknown as AnyObject;
}

/** The user id a principal creates objects as (a runner acts for the admin who minted its token). */
function ownerIdOf(principal: Principal): string {
  return principal.kind === 'User' ? principal.userId : principal.ownerId;
}

function alreadyExists(kind: Kind, name: string, cause: unknown): ConflictError {
  const error = new ConflictError(`${kind} "${name}" already exists`, 'AlreadyExists', [
    { field: 'metadata.name', message: `${kind} "${name}" already exists` },
  ]);
  (error as { cause?: unknown }).cause = cause;
  return error;
}

function isReason(error: unknown, reason: string): boolean {
  return error instanceof WarrenError && error.reason === reason;
}

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

/**
 * Registers every resource route on `app`.
 * Paths: `/api/v1/{plural}` (GET list|watch, POST), `/api/v1/{plural}/{id}` (GET, PATCH, DELETE),
 * `PUT /api/v1/{environments,runners}/{id}/status`, `POST /api/v1/environments/{id}/{keepalive,access}`.
 * `{id}` is an id or a name.
 */
export function registerResourceRoutes(app: FastifyInstance, context: RouteContext): void {
  const { store } = context;
  const now = () => context.options.now();

  /** Finds an object by id, else by name, and checks `verb` on it. @throws {NotFoundError} {ForbiddenError} */
  async function resolve(principal: Principal, kind: Kind, idOrName: string, verb: Verb): Promise<AnyObject> {
    let object: AnyObject | undefined = await store.get(kind, idOrName);
    if (!object) {
      const candidates: AnyObject[] = await store.getByName(kind, idOrName);
      if (candidates.length > 1) {
        // Only Environments share names (across owners): prefer what the principal may see, then what it owns.
        let scope: ListScope | undefined;
        try {
          scope = listScope(principal, kind);
        } catch {
          scope = undefined;
        }
        const visible = candidates.filter((candidate) => scope !== undefined && matchesScope(candidate, scope));
        const owned = visible.filter((candidate) => candidate.metadata.ownerId === ownerIdOf(principal));
        if (owned.length === 1) object = owned[0];
        else if (visible.length === 1) object = visible[0];
        else if (visible.length > 1) {
          throw new ConflictError(`several ${kind} objects are named "${idOrName}"; address it by id`, 'Conflict', [
            { field: 'id', message: 'name is ambiguous' },
          ]);
        } else object = candidates[0];
      } else {
        object = candidates[0];
      }
    }
    if (!object) throw new NotFoundError(kind, idOrName);
    authorize(principal, verb, kind, object);
    return object;
  }

  function matchesScope(object: AnyObject, scope: ListScope): boolean {
    const filter = scope.filter;
    if (filter.ownerId !== undefined && object.metadata.ownerId !== filter.ownerId) return false;
    if (filter.runnerId !== undefined && (object.kind !== 'Environment' || object.status.runnerId !== filter.runnerId)) return false;
    return scope.visible ? scope.visible(object) : true;
  }

  for (const schemas of Object.values(KIND_SCHEMAS)) {
    const kind = schemas.kind;
    const base = `/api/v1/${schemas.plural}`;

    // ---------------------------------------------------------------- list / watch
    app.get(base, async (request, reply) => {
      const principal = context.principalOf(request);
      const query = parseListQuery(request.query);
      authorize(principal, 'list', kind);
      const scope = listScope(principal, kind);
      const filter: ObjectFilter = { ...scope.filter };
      if (query.labels) filter.labels = query.labels;
      if (query.runnerId !== undefined) {
        if (kind !== 'Environment') {
          throw new InvalidError('runnerId filters environments only', [{ field: 'runnerId', message: 'only for environments' }]);
        }
        if (filter.runnerId !== undefined && filter.runnerId !== query.runnerId) {
          throw new ForbiddenError('a runner token reads only the environments scheduled to its own runner');
        }
        filter.runnerId = query.runnerId;
      }
      if (query.watch) {
        const served = serveWatch(reply, {
          store,
          kind,
          filter,
          visible: scope.visible,
          fromResourceVersion: query.resourceVersion,
          present,
          timing: context.options.watch,
          logger: context.logger,
          requestId: request.id,
          serverSignal: context.closing,
        });
        context.activeWatches.add(served);
        try {
          await served;
        } finally {
          context.activeWatches.delete(served);
        }
        return reply;
      }
      const listed = await store.list(kind, filter);
      const items: AnyObject[] = scope.visible ? listed.items.filter(scope.visible) : listed.items;
      const list: ResourceList<AnyObject> = {
        kind: listKind(kind),
        apiVersion: API_VERSION,
        metadata: { resourceVersion: listed.resourceVersion },
        items: items.map(present),
      };
      return list;
    });

    // ---------------------------------------------------------------- get
    app.get<{ Params: { id: string } }>(`${base}/:id`, async (request) => {
      const principal = context.principalOf(request);
      return present(await resolve(principal, kind, request.params.id, 'get'));
    });

    // ---------------------------------------------------------------- create
    app.post(base, async (request, reply) => {
      requireContentType(request, JSON_ONLY);
      const principal = context.principalOf(request);
      authorize(principal, 'create', kind);
      const body = requireObject(request.body);
      const created = await createObject(principal, kind, body);
      void reply.code(201);
      return created;
    });

    // ---------------------------------------------------------------- patch
    app.patch<{ Params: { id: string } }>(`${base}/:id`, async (request) => {
      requireContentType(request, PATCH_TYPES);
      const principal = context.principalOf(request);
      const body = requireObject(request.body);
      const shape = parseOrThrow(schemas.patch, withoutNulls(body), `${kind} patch`) as { metadata?: { resourceVersion?: string } };
      const object = await resolve(principal, kind, request.params.id, 'update');
      const rawMetadata = isJsonObject(body.metadata) ? body.metadata : {};
      if (kind === 'Environment' && isJsonObject(body.spec) && typeof body.spec.className === 'string') {
        await requireClass(body.spec.className);
      }
      const updated = await store.update(
        kind,
        object.metadata.id,
        (current: AnyObject) => {
          authorize(principal, 'update', kind, current);
          let labels = current.metadata.labels;
          if ('labels' in rawMetadata) {
            labels = parseOrThrow(LabelsSchema, applyMergePatch(current.metadata.labels, rawMetadata.labels) ?? {}, 'labels', 'metadata.labels');
          }
          let spec: unknown = current.spec;
          if ('spec' in body) spec = parseOrThrow(schemas.spec, applyMergePatch(current.spec, body.spec), `${kind} spec`, 'spec');
          if (current.kind === 'Environment') checkEnvironmentUpdate(current, spec as Environment['spec']);
          return { ...current, metadata: { ...current.metadata, labels }, spec } as AnyObject;
        },
        shape.metadata?.resourceVersion === undefined ? {} : { expectedResourceVersion: shape.metadata.resourceVersion },
      );
      return present(updated);
    });

    // ---------------------------------------------------------------- delete
    app.delete<{ Params: { id: string } }>(`${base}/:id`, async (request) => {
      const principal = context.principalOf(request);
      const object = await resolve(principal, kind, request.params.id, 'delete');
      if (object.kind === 'Environment') return deleteEnvironment(principal, object);
      const deleted = await store.delete(kind, object.metadata.id);
      if (deleted.kind === 'User') await deleteTokensOf(deleted.metadata.id);
      return present(deleted);
    });

    // ---------------------------------------------------------------- status subresource
    const statusUpdate = schemas.statusUpdate;
    if (statusUpdate) {
      app.put<{ Params: { id: string } }>(`${base}/:id/status`, async (request) => {
        requireContentType(request, JSON_ONLY);
        const principal = context.principalOf(request);
        const body = requireObject(request.body);
        const parsed = parseOrThrow(statusUpdate, body, `${kind} status`) as {
          metadata?: { resourceVersion?: string };
          status: AnyObject['status'];
        };
        const object = await resolve(principal, kind, request.params.id, 'updateStatus');
        const updated = await store.update(
          kind,
          object.metadata.id,
          (current: AnyObject) => {
            authorize(principal, 'updateStatus', kind, current);
            return { ...current, status: mergeStatus(principal, current, parsed.status) } as AnyObject;
          },
          parsed.metadata?.resourceVersion === undefined ? {} : { expectedResourceVersion: parsed.metadata.resourceVersion },
        );
        return present(updated);
      });
    }
  }

  // ---------------------------------------------------------------- environment actions
  app.post<{ Params: { id: string } }>(`/api/v1/${KINDS.Environment}/:id/keepalive`, async (request) => {
    requireContentType(request, JSON_ONLY);
    const principal = context.principalOf(request);
    const object = (await resolve(principal, 'Environment', request.params.id, 'keepalive')) as Environment;
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
    const environment = (await resolve(principal, 'Environment', request.params.id, 'access')) as Environment;
    const runnerId = environment.status.runnerId;
    if (runnerId === undefined) {
      throw new ConflictError(`environment "${environment.metadata.name}" is not scheduled to a runner yet`);
    }
    const runner = await store.get('Runner', runnerId);
    const endpoint = runner?.status.endpoints.access;
    if (!runner || !endpoint) {
      throw new ConflictError(`the runner of environment "${environment.metadata.name}" has no access endpoint`);
    }
    const userId = principal.kind === 'User' ? principal.userId : principal.ownerId;
    const signed = await signAccessToken(
      context.signingKeys,
      { runnerId, userId, environmentId: environment.metadata.id },
      { ttlSeconds: context.options.accessTokenTtlSeconds, now: now() },
    );
    const grant: AccessGrant = { token: signed.token, expiresTime: signed.expiresTime, endpoint, environmentId: environment.metadata.id };
    return grant;
  });

  // ---------------------------------------------------------------- helpers using the store

  async function requireClass(className: string): Promise<void> {
    const classes = await store.getByName('EnvironmentClass', className);
    if (classes.length === 0) {
      throw new InvalidError(`environment class "${className}" does not exist`, [
        { field: 'spec.className', message: `environment class "${className}" does not exist` },
      ]);
    }
  }

  async function deleteTokensOf(userId: string): Promise<void> {
    const tokens = await store.list('Token', { ownerId: userId });
    for (const token of tokens.items) {
      await store.delete('Token', token.metadata.id).catch((error: unknown) => {
        if (!isReason(error, 'NotFound')) throw error;
      });
    }
  }

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

  /** Creates an object of `kind` from a request body. @throws {InvalidError} {ConflictError} {ForbiddenError} */
  async function createObject(principal: Principal, kind: Kind, body: Body): Promise<AnyObject> {
    const ownerId = ownerIdOf(principal);
    switch (kind) {
      case 'Environment': {
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
        await requireClass(input.spec.className);
        const status = EnvironmentStatusSchema.parse({ phase: 'Pending', conditions: [] });
        const given = input.metadata.name;
        for (let attempt = 0; ; attempt++) {
          const name = given ?? generateEnvironmentName(input.spec.source.git.url);
          try {
            return await store.create('Environment', { name, ownerId, labels: input.metadata.labels ?? {}, spec: input.spec, status });
          } catch (error) {
            if (!isReason(error, 'AlreadyExists')) throw error;
            if (given !== undefined || attempt >= 4) throw alreadyExists(kind, name, error);
          }
        }
      }
      case 'Runner': {
        const input = parseOrThrow(KIND_SCHEMAS.Runner.create, body, 'runner') as {
          metadata: { name: string; labels?: Record<string, string> };
          spec: Runner['spec'];
        };
        authorize(principal, 'create', kind, draft(kind, input.metadata.name, ownerId, input.spec));
        try {
          return await store.create('Runner', {
            name: input.metadata.name,
            ownerId,
            labels: input.metadata.labels ?? {},
            spec: input.spec,
            status: RunnerStatusSchema.parse({ phase: 'Inactive' }),
          });
        } catch (error) {
          if (isReason(error, 'AlreadyExists')) throw alreadyExists(kind, input.metadata.name, error);
          throw error;
        }
      }
      case 'EnvironmentClass': {
        const input = parseOrThrow(KIND_SCHEMAS.EnvironmentClass.create, body, 'environment class') as {
          metadata: { name: string; labels?: Record<string, string> };
          spec: EnvironmentClass['spec'];
        };
        try {
          return await store.create('EnvironmentClass', {
            name: input.metadata.name,
            ownerId,
            labels: input.metadata.labels ?? {},
            spec: input.spec,
            status: {},
          });
        } catch (error) {
          if (isReason(error, 'AlreadyExists')) throw alreadyExists(kind, input.metadata.name, error);
          throw error;
        }
      }
      case 'User': {
        const input = parseOrThrow(KIND_SCHEMAS.User.create, body, 'user') as {
          metadata: { name: string; labels?: Record<string, string> };
          spec: User['spec'];
        };
        try {
          return await store.create('User', { name: input.metadata.name, ownerId, labels: input.metadata.labels ?? {}, spec: input.spec, status: {} });
        } catch (error) {
          if (isReason(error, 'AlreadyExists')) throw alreadyExists(kind, input.metadata.name, error);
          throw error;
        }
      }
      case 'Token': {
        const input = parseOrThrow(KIND_SCHEMAS.Token.create, body, 'token') as {
          metadata: { name?: string; labels?: Record<string, string> };
          spec: Token['spec'];
        };
        authorize(principal, 'create', kind, draft(kind, input.metadata.name ?? '', ownerId, input.spec));
        const { spec } = input;
        if (spec.type === 'Runner' && spec.runnerName === undefined) {
          throw new InvalidError('a runner token must name its runner', [{ field: 'spec.runnerName', message: 'required for type Runner' }]);
        }
        if (spec.type === 'Personal' && spec.runnerName !== undefined) {
          throw new InvalidError('a personal token names no runner', [{ field: 'spec.runnerName', message: 'only for type Runner' }]);
        }
        if (spec.expiresTime !== undefined && Date.parse(spec.expiresTime) <= now().getTime()) {
          throw new InvalidError('the token would already be expired', [{ field: 'spec.expiresTime', message: 'must be in the future' }]);
        }
        const given = input.metadata.name;
        for (let attempt = 0; ; attempt++) {
          const name = given ?? `token-${randomSuffix(8)}`;
          try {
            const { token } = await issueToken(store, {
              name,
              ownerId,
              type: spec.type,
              ...(spec.runnerName === undefined ? {} : { runnerName: spec.runnerName }),
              ...(spec.expiresTime === undefined ? {} : { expiresTime: spec.expiresTime }),
              ...(spec.description === undefined ? {} : { description: spec.description }),
              labels: input.metadata.labels ?? {},
            });
            return token; // the only response that carries status.secret
          } catch (error) {
            if (!isReason(error, 'AlreadyExists')) throw error;
            if (given !== undefined || attempt >= 4) throw alreadyExists(kind, name, error);
          }
        }
      }
    }
  }
}

/** @throws {InvalidError} 422 `InvalidGitUrl` naming `spec.source.git.url` when `url` fails {@link validateGitUrl}. */
function checkGitUrl(url: string): void {
  const problem = validateGitUrl(url);
  if (problem !== undefined) {
    throw new InvalidError(`spec.source.git.url ${problem}`, [{ field: 'spec.source.git.url', message: problem }], 'InvalidGitUrl', 422);
  }
}

/** Rules of an environment patch beyond the schema. */
function checkEnvironmentUpdate(current: Environment, spec: Environment['spec']): void {
  if (current.metadata.deletionTime !== undefined) {
    throw new ConflictError(`environment "${current.metadata.name}" is being deleted`);
  }
  if (spec.desiredPhase === 'Deleted') {
    throw new InvalidError('use DELETE to delete an environment', [{ field: 'spec.desiredPhase', message: 'must be Running or Stopped; use DELETE' }]);
  }
  if (spec.source.git.url !== current.spec.source.git.url) checkGitUrl(spec.source.git.url);
}

/**
 * The status to store for a `PUT .../status`. A runner cannot move an environment to another runner (the
 * scheduler owns `status.runnerId`), an omitted runnerId keeps the current one, and `lastActivityTime` never goes back, so a status written from a stale
 * read does not undo a keepalive.
 * @throws {ForbiddenError} when a runner sets another runnerId.
 */
function mergeStatus(principal: Principal, current: AnyObject, next: AnyObject['status']): AnyObject['status'] {
  if (current.kind !== 'Environment') return next;
  const status = { ...(next as Environment['status']) };
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
