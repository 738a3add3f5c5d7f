// Authorization rules: which principal may do what to which object. One table for every endpoint, so the
// HTTP layer asks `authorize()` and never decides access itself.
import { NotFoundError } from '@warren/base';
import type { Kind, Resource } from '@warren/api';
import type { ObjectFilter } from '../storage/index.js';
import { ForbiddenError, type Principal } from './principal.js';

/**
 * What a request does. `updateStatus` is `PUT .../status`; `keepalive` and `access` are the environment
 * actions `POST .../keepalive` and `POST .../access`.
 */
export type Verb = 'list' | 'get' | 'create' | 'update' | 'delete' | 'updateStatus' | 'keepalive' | 'access';

/**
 * How a principal's view of a kind is narrowed: `filter` goes to the store; `visible`, when set, is an extra
 * check on each object for rules the filter cannot express. It only looks at immutable fields (id, name), so
 * it gives the same answer for every version of an object, DELETED events included.
 */
export interface ListScope {
  filter: ObjectFilter;
  visible?: (object: Resource) => boolean;
}

/**
 * The list/watch scope of `principal` over `kind`.
 * Users see their own Environments and Tokens and their own User; admins see everything; everyone reads
 * Runners and EnvironmentClasses; a runner sees only its own Runner, the environments scheduled to it and the
 * EnvironmentClasses (it needs their limits).
 * @throws {ForbiddenError} when the principal may not list the kind at all (runner: Users, Tokens; a runner
 * that has not registered yet: Environments).
 */
export function listScope(principal: Principal, kind: Kind): ListScope {
  const all: ListScope = { filter: {} };
  if (principal.kind === 'User') {
    if (principal.admin) return all;
    switch (kind) {
      case 'Environment':
      case 'Token':
        return { filter: { ownerId: principal.userId } };
      case 'User':
        return { filter: {}, visible: (object) => object.metadata.id === principal.userId };
      case 'Runner':
      case 'EnvironmentClass':
        return all;
    }
  }
  switch (kind) {
    case 'Environment': {
      const runnerId = principal.runnerId;
      if (runnerId === undefined) throw new ForbiddenError(`runner "${principal.runnerName}" must register before it reads environments`);
      return { filter: { runnerId } };
    }
    case 'Runner':
      return { filter: {}, visible: (object) => object.metadata.name === principal.runnerName };
    case 'EnvironmentClass':
      return all;
    case 'User':
    case 'Token':
      throw new ForbiddenError(`runner tokens may not read ${kind} objects`);
  }
}

/**
 * Checks that `principal` may apply `verb` to `object` of `kind` (for `create`: the object about to be created,
 * for `list`: undefined).
 * @throws {NotFoundError} when a user asks for an object of another user (its existence is not revealed).
 * @throws {ForbiddenError} for every other denial: users writing status, non-admins writing classes, users or
 * runners, runners touching anything but their own runner and its environments.
 */
export function authorize(principal: Principal, verb: Verb, kind: Kind, object?: Resource): void {
  if (principal.kind === 'User') authorizeUser(principal, verb, kind, object);
  else authorizeRunner(principal, verb, kind, object);
}

function authorizeUser(principal: Extract<Principal, { kind: 'User' }>, verb: Verb, kind: Kind, object: Resource | undefined): void {
  const owns = object === undefined || object.metadata.ownerId === principal.userId;
  const hidden = () => new NotFoundError(kind, object?.metadata.name ?? '');
  switch (kind) {
    case 'Environment':
      if (!principal.admin && verb !== 'create' && verb !== 'list' && !owns) throw hidden();
      if (verb === 'updateStatus' && !principal.admin) throw new ForbiddenError('only runners and controllers write environment status');
      return;
    case 'Token':
      if (!principal.admin && verb !== 'create' && verb !== 'list' && !owns) throw hidden();
      if (verb === 'create' && object?.kind === 'Token' && object.spec.type === 'Runner' && !principal.admin) {
        throw new ForbiddenError('only admins create runner tokens');
      }
      if (verb === 'updateStatus' || verb === 'keepalive' || verb === 'access') throw new ForbiddenError(`tokens do not support ${verb}`);
      return;
    case 'User':
      if (principal.admin) return;
      if ((verb === 'get' || verb === 'list') && (object === undefined || object.metadata.id === principal.userId)) return;
      if (verb === 'get') throw hidden();
      throw new ForbiddenError('only admins manage users');
    case 'EnvironmentClass':
      if (verb === 'get' || verb === 'list' || principal.admin) return;
      throw new ForbiddenError('only admins manage environment classes');
    case 'Runner':
      if (verb === 'get' || verb === 'list' || principal.admin) return;
      throw new ForbiddenError(verb === 'updateStatus' ? 'only runners and controllers write runner status' : 'only admins manage runners');
  }
}

function authorizeRunner(principal: Extract<Principal, { kind: 'Runner' }>, verb: Verb, kind: Kind, object: Resource | undefined): void {
  switch (kind) {
    case 'Runner': {
      if (verb !== 'get' && verb !== 'list' && verb !== 'create' && verb !== 'updateStatus') {
        throw new ForbiddenError(`runner tokens may not ${verb} runners`);
      }
      if (object !== undefined && object.metadata.name !== principal.runnerName) {
        throw new ForbiddenError(`this token acts only as runner "${principal.runnerName}"`);
      }
      return;
    }
    case 'Environment': {
      if (verb !== 'get' && verb !== 'list' && verb !== 'updateStatus' && verb !== 'keepalive') {
        throw new ForbiddenError(`runner tokens may not ${verb} environments`);
      }
      if (principal.runnerId === undefined) throw new ForbiddenError(`runner "${principal.runnerName}" must register first`);
      if (object !== undefined && (object.kind !== 'Environment' || object.status.runnerId !== principal.runnerId)) {
        throw new ForbiddenError(`environment "${object.metadata.name}" is not scheduled to runner "${principal.runnerName}"`);
      }
      return;
    }
    case 'EnvironmentClass':
      if (verb === 'get' || verb === 'list') return;
      throw new ForbiddenError('only admins manage environment classes');
    case 'User':
    case 'Token':
      throw new ForbiddenError(`runner tokens may not access ${kind} objects`);
  }
}
