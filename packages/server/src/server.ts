// The control-plane process: opens the store, bootstraps it, runs the controllers and serves the API.
import { mkdir } from 'node:fs/promises';
import type { Logger } from '@warren/base';
import type { FastifyInstance } from 'fastify';
import { bootstrap, loadSigningKeys } from './auth/index.js';
import { ControllerManager, type ControllerOptions } from './controllers/index.js';
import { buildApp, type AppOptions } from './http/index.js';
import { openStore, type ResourceStore } from './storage/index.js';

/** Options of {@link startServer}. */
export interface StartServerOptions {
  /** Data directory (`WARREN_DATA_DIR`); PGlite keeps its files under it. Created when missing. */
  dataDir: string;
  /** `postgres://...` (`WARREN_DATABASE_URL`): use PostgreSQL instead of PGlite. */
  databaseUrl?: string;
  /** Listen address (default `127.0.0.1`). */
  host?: string;
  /** Listen port (default 7080; 0 picks a free one). */
  port?: number;
  logger: Logger;
  /** Run the controllers (scheduler, liveness, inactivity, GC) under a lease (default true). */
  controllers?: boolean;
  /** Timing of the controllers: check/resync intervals, runner heartbeat timeout, lease retry. */
  controllerOptions?: Pick<ControllerOptions, 'checkIntervalMs' | 'resyncIntervalMs' | 'runnerHeartbeatTimeoutSeconds' | 'clock'> & {
    leaseRetryMs?: number;
  };
  /** Tunables of the HTTP API (body limit, watch timing, keepalive batching, token lifetimes). */
  app?: AppOptions;
}

/** A running control plane. */
export interface RunningServer {
  /** Base URL clients use, e.g. `http://127.0.0.1:7080` (a wildcard listen address is shown as loopback). */
  url: string;
  store: ResourceStore;
  app: FastifyInstance;
  /** The admin's token secret, only on the first start of a fresh database (it cannot be shown again). */
  adminToken?: string;
  /** The controller manager, when controllers run. */
  controllers?: ControllerManager;
  /** Stops the controllers, the HTTP server (ending open watches) and closes the store. Idempotent. */
  close(): Promise<void>;
}

/** Formats a listen address for a URL: wildcards become loopback, IPv6 gets brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Starts the control plane: opens the store (running migrations), bootstraps it (admin user and token, default
 * class), loads or creates the signing key, starts the ControllerManager (unless `controllers: false`) and listens.
 * @throws when the store cannot be opened or the address cannot be bound (e.g. EADDRINUSE); whatever was started
 * is stopped again first.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const logger = options.logger.child({ component: 'server' });
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore({
    dataDir: options.dataDir,
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    logger: options.logger,
  });
  let app: FastifyInstance | undefined;
  let controllers: ControllerManager | undefined;
  const stop = async () => {
    await controllers?.stop();
    await app?.close();
    await store.close();
  };
  try {
    const { adminToken } = await bootstrap(store);
    const signingKeys = await loadSigningKeys(store);
    app = buildApp({ store, logger: options.logger, signingKeys, ...(options.app ? { options: options.app } : {}) });
    if (options.controllers !== false) {
      controllers = new ControllerManager({ store, logger: options.logger, ...options.controllerOptions });
      controllers.start();
    }
    const host = options.host ?? '127.0.0.1';
    await app.listen({ host, port: options.port ?? 7080 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : (options.port ?? 7080);
    const url = `http://${urlHost(host)}:${port}`;
    logger.info({ url, engine: options.databaseUrl ? 'postgres' : 'pglite', controllers: controllers !== undefined }, 'server listening');
    let closing: Promise<void> | undefined;
    return {
      url,
      store,
      app,
      ...(adminToken === undefined ? {} : { adminToken }),
      ...(controllers === undefined ? {} : { controllers }),
      close: () => (closing ??= stop()),
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}
