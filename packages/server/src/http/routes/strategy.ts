// The per-kind part of the REST routes, as Kubernetes keeps one "strategy" per kind, and helpers strategies share.
import { API_VERSION, type Kind, type Resource, type ResourceByKind } from '@warren/api';
import { ConflictError, WarrenError } from '@warren/base';
import type { FastifyInstance } from 'fastify';
import type { Principal } from '../../auth/index.js';
import type { RouteContext } from './context.js';
import type { Body } from './request.js';

/**
 * What differs between kinds in the generic routes of kind-routes.ts. Every hook is optional except `create`;
 * a hook left out means "as stored" (present), "nothing more to check" (prepareUpdate, validateUpdate),
 * "the status as sent" (mergeStatus) or "remove the object" (delete). Whether a kind has a status subresource
 * comes from its schemas (`KIND_SCHEMAS[kind].statusUpdate`).
 */
export interface KindStrategy<K extends Kind> {
  readonly kind: K;
  /** `GET ?runnerId=` is accepted (it filters on `status.runnerId`); other kinds answer 422. */
  readonly listByRunnerId?: boolean;
  /** Shapes an object for every response but the create's (tokens hide their secret). Keep identity when nothing changes: watches cache lines by object. */
  present?(object: ResourceByKind[K]): Resource;
  /**
   * Validates a create body and stores the new object; `authorize(principal, 'create', kind)` has passed.
   * @returns the object as the 201 response carries it.
   * @throws {InvalidError} {ConflictError} {ForbiddenError}
   */
  create(principal: Principal, body: Body): Promise<ResourceByKind[K]>;
  /** Checks a PATCH body against other objects before the read-modify-write (e.g. that a referenced class exists). */
  prepareUpdate?(body: Body): Promise<void>;
  /** Rules of a patched object beyond its schema, checked inside the read-modify-write. @throws a WarrenError to refuse. */
  validateUpdate?(current: ResourceByKind[K], spec: ResourceByKind[K]['spec']): void;
  /** The status to store for `PUT .../status` given the sent one. @throws {ForbiddenError} for fields the principal may not set. */
  mergeStatus?(principal: Principal, current: ResourceByKind[K], next: ResourceByKind[K]['status']): ResourceByKind[K]['status'];
  /** Deletes an object `delete` is authorized on. @returns the removed (or marked) object. */
  delete?(principal: Principal, object: ResourceByKind[K]): Promise<ResourceByKind[K]>;
  /** Registers the kind's action routes (e.g. `POST .../{id}/keepalive`), after every kind's generic routes. */
  registerActions?(app: FastifyInstance): void;
}

/** Builds a kind's strategy over the routes' shared state. */
export type KindStrategyFactory<K extends Kind> = (context: RouteContext) => KindStrategy<K>;

/** The user id a principal creates objects as (a runner acts for the admin who minted its token). */
export function ownerIdOf(principal: Principal): string {
  return principal.kind === 'User' ? principal.userId : principal.ownerId;
}

/** A stand-in object for authorizing a create before the object exists. */
export function draft<K extends Kind>(kind: K, name: string, ownerId: string, spec: ResourceByKind[K]['spec']): ResourceByKind[K] {
  return {
    kind,
    apiVersion: API_VERSION,
    metadata: { id: '', name, generation: 0, resourceVersion: '0', createdTime: new Date(0).toISOString(), labels: {}, ownerId },
    spec,
    status: {},
  } as unknown as ResourceByKind[K];
}

/** True when `error` is a WarrenError with `reason`. */
export function isReason(error: unknown, reason: string): boolean {
  return error instanceof WarrenError && error.reason === reason;
}

function alreadyExists(kind: Kind, name: string, cause: unknown): ConflictError {
  const error = new ConflictError(`${kind} "${name}" already exists`, 'AlreadyExists', [
    { field: 'metadata.name', message: `${kind} "${name}" already exists` },
  ]);
  (error as { cause?: unknown }).cause = cause;
  return error;
}

/**
 * Runs `create` with the given name, or with up to 5 names from `name()` while they are taken.
 * @throws {ConflictError} 409 `AlreadyExists` naming `metadata.name` when the given (or the fifth generated) name is taken.
 */
export async function createNamed<T>(kind: Kind, name: string | (() => string), create: (name: string) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const current = typeof name === 'string' ? name : name();
    try {
      return await create(current);
    } catch (error) {
      if (!isReason(error, 'AlreadyExists')) throw error;
      if (typeof name === 'string' || attempt >= 4) throw alreadyExists(kind, current, error);
    }
  }
}
