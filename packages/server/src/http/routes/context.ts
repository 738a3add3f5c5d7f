// What the HTTP routes share: the store, the signing key, the resolved options and the app's closing signal.
import type { Logger } from '@warren/base';
import type { FastifyRequest } from 'fastify';
import type { Principal, SigningKeys } from '../../auth/index.js';
import type { ResourceStore } from '../../storage/index.js';
import type { WatchTiming } from '../watch.js';

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
