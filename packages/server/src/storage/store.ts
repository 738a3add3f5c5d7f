// The storage contract of the control plane. One implementation (Kysely) serves PGlite and
// PostgreSQL; the contract suite (store.contract.test.ts) runs against both.
import type { Kind, ResourceByKind, WatchEvent } from '@warren/api';

/** Fields a caller supplies to create an object; the store fills id (if absent), generation, resourceVersion, createdTime. */
export interface NewObject<K extends Kind> {
  id?: string;
  name: string;
  ownerId: string;
  labels?: Record<string, string>;
  spec: ResourceByKind[K]['spec'];
  status: ResourceByKind[K]['status'];
}

/** Filters for list and watch. All given filters must match. */
export interface ObjectFilter {
  ownerId?: string;
  /** Environments: `status.runnerId` equals this. */
  runnerId?: string;
  /** Exact-match labels. */
  labels?: Record<string, string>;
}

/** Options for {@link ResourceStore.update}. */
export interface UpdateOptions {
  /** When set, the update fails with a 409 ConflictError unless the stored resourceVersion equals it. */
  expectedResourceVersion?: string;
}

/**
 * A mutation callback for {@link ResourceStore.update}: receives the current object (a copy) and returns
 * the new object, or `undefined` to make no change. Only `metadata.labels`, `metadata.deletionTime`, `spec`
 * and `status` of the result are stored; `generation` is bumped by the store when `spec` changed.
 * It may throw to abort (the error propagates).
 */
export type Mutation<K extends Kind> = (current: ResourceByKind[K]) => ResourceByKind[K] | undefined;

/** A lease held by one process; see {@link ResourceStore.tryAcquireLease}. */
export interface Lease {
  readonly name: string;
  /**
   * Aborted when the lease ends: released, or lost (PostgreSQL: its connection failed, so the advisory lock
   * is gone and another process may take it). A holder must stop acting as leader when this fires.
   */
  readonly signal: AbortSignal;
  /** Releases the lease (idempotent). */
  release(): Promise<void>;
}

/**
 * Storage of resources with Kubernetes-style semantics:
 * - `resourceVersion` is a global, strictly increasing counter (decimal string); every write bumps it and
 *   records a watch event in the same transaction; events are totally ordered by resourceVersion.
 * - Names are unique per kind; Environment names are unique per owner.
 * Errors: ConflictError (reason `AlreadyExists` or `Conflict`, HTTP 409), NotFoundError (404),
 * GoneError (410) from `watch` when the requested resourceVersion is older than the kept history.
 */
export interface ResourceStore {
  /** @throws {ConflictError} reason `AlreadyExists` when the name is taken. */
  create<K extends Kind>(kind: K, object: NewObject<K>): Promise<ResourceByKind[K]>;
  /** @returns the object with this id, or undefined. */
  get<K extends Kind>(kind: K, id: string): Promise<ResourceByKind[K] | undefined>;
  /** @returns objects of `kind` named `name` (several only for Environments of different owners), filtered. */
  getByName<K extends Kind>(kind: K, name: string, filter?: ObjectFilter): Promise<ResourceByKind[K][]>;
  /** @returns matching objects sorted by createdTime, and the store's current resourceVersion. */
  list<K extends Kind>(kind: K, filter?: ObjectFilter): Promise<{ items: ResourceByKind[K][]; resourceVersion: string }>;
  /**
   * Read-modify-write of one object in a transaction.
   * @throws {NotFoundError} when it does not exist; {ConflictError} on a resourceVersion mismatch.
   * @returns the stored object (unchanged when the mutation returned undefined).
   */
  update<K extends Kind>(kind: K, id: string, mutation: Mutation<K>, options?: UpdateOptions): Promise<ResourceByKind[K]>;
  /** Removes the object and records a DELETED event. @throws {NotFoundError}; {ConflictError} on rv mismatch. */
  delete<K extends Kind>(kind: K, id: string, options?: UpdateOptions): Promise<ResourceByKind[K]>;
  /**
   * Streams events of `kind` matching `filter` with resourceVersion > `fromResourceVersion`, first from history,
   * then live, until `signal` aborts. Without `fromResourceVersion`, starts with an ADDED event for every current
   * matching object. For a filtered watch, an object that stops matching arrives as DELETED (Kubernetes semantics).
   * @throws {GoneError} when `fromResourceVersion` is older than the oldest kept event.
   */
  watch<K extends Kind>(
    kind: K,
    options: { fromResourceVersion?: string; filter?: ObjectFilter; signal: AbortSignal },
  ): AsyncIterable<WatchEvent<ResourceByKind[K]>>;
  /** Stores a token's secret hash (hex SHA-256) alongside a Token object created with {@link create}. */
  setTokenSecretHash(tokenId: string, secretHash: string): Promise<void>;
  /** @returns the Token whose secret hash matches, or undefined. */
  findTokenBySecretHash(secretHash: string): Promise<ResourceByKind['Token'] | undefined>;
  /**
   * Tries to take the named lease for this process (PostgreSQL advisory lock on a dedicated connection; PGlite:
   * always granted, one process). @returns the lease, or undefined when another process holds it.
   */
  tryAcquireLease(name: string): Promise<Lease | undefined>;
  /** Key-value settings (e.g. the server's signing key), stored as JSON. */
  getSetting<T>(key: string): Promise<T | undefined>;
  setSetting(key: string, value: unknown): Promise<void>;
  close(): Promise<void>;
}
