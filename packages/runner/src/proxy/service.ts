// Wiring of port access into the runner: the port proxy plus the ports watcher that fills `status.ports`.
import { type Environment, type EnvironmentStatus, portUrl } from '@warren/api';
import { type Logger, silentLogger } from '@warren/base';
import { join } from 'node:path';
import type { EnvironmentBackend } from '../environment/index.js';
import { PortsWatcher } from '../ports/index.js';
import { type PortProxy, startPortProxy } from './server.js';
import { SessionSigner } from './session.js';
import { createPortTokenVerifier } from '../access/index.js';

/** Default address of the port proxy. */
export const DEFAULT_PROXY_LISTEN = { host: '127.0.0.1', port: 7082 } as const;

/** Options of {@link startPortService}. */
export interface PortServiceOptions {
  /** Server base URL (for the JWKS). */
  server: string;
  dataDir: string;
  backend: EnvironmentBackend;
  /** This runner's id, known once registered. */
  runnerId: () => string;
  /** The runner's environments (RunnerController.environments); empty before the controller exists. */
  environments: () => Environment[];
  /** RunnerController.patchStatus. */
  patchStatus: (environmentId: string, change: (status: EnvironmentStatus) => EnvironmentStatus | undefined) => Promise<unknown>;
  /** Where the proxy listens; default {@link DEFAULT_PROXY_LISTEN}. */
  listen?: { host: string; port: number };
  /** Domain of `<port>-<env>.<domain>` (default `localhost`). */
  domain?: string;
  /** The proxy's base URL as clients reach it (default `http://<domain>:<bound port>`); its host must be the domain. */
  advertiseUrl?: string;
  onActivity?: (environmentId: string) => void;
  /**
   * Who serves the proxy's address: `native` (default), the C front (front.ts, compiled into `<dataDir>/bin`),
   * falling back to Node when it cannot be compiled; `node`, the Node proxy alone.
   */
  front?: 'native' | 'node';
  /** Port scan interval in ms (default 1000). */
  scanIntervalMs?: number;
  logger?: Logger;
}

/** Port proxy and ports watcher of a runner. */
export interface PortService {
  /** The proxy's advertised base URL, published as `status.endpoints.proxy`. */
  endpoint: string;
  proxy: PortProxy;
  /** Starts the ports watcher (once the runner's controller runs). */
  startWatcher(): void;
  close(): Promise<void>;
}

/**
 * Starts the port proxy (when the default address is taken, a free port is used instead and a warning logged:
 * the published endpoint names the real port, so URLs from the server still work) and prepares the ports
 * watcher. Backends without {@link EnvironmentBackend.network} get a proxy that answers 503.
 * @throws {Error} (errno) when an explicitly given address cannot be bound.
 */
export async function startPortService(options: PortServiceOptions): Promise<PortService> {
  const logger = (options.logger ?? silentLogger).child({ component: 'ports' });
  const domain = options.domain ?? 'localhost';
  const network = (id: string) => options.backend.network?.(id) ?? Promise.resolve(undefined);
  const proxyOptions = {
    domain,
    environments: options.environments,
    network,
    verifyToken: createPortTokenVerifier({ server: options.server, runnerId: options.runnerId }),
    sessions: await SessionSigner.fromFile(join(options.dataDir, 'proxy-session.key')),
    ...(options.onActivity ? { onActivity: options.onActivity } : {}),
    ...(options.front === 'node' ? {} : { nativeFront: { binDir: join(options.dataDir, 'bin'), runDir: join(options.dataDir, 'run') } }),
    logger: options.logger ?? silentLogger,
  };
  const listen = options.listen ?? DEFAULT_PROXY_LISTEN;
  let proxy: PortProxy;
  try {
    proxy = await startPortProxy({ ...proxyOptions, ...listen });
  } catch (error) {
    if (options.listen || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    logger.warn({ port: listen.port }, 'default port proxy address in use, using a free port');
    proxy = await startPortProxy({ ...proxyOptions, host: listen.host, port: 0 });
  }
  const endpoint = options.advertiseUrl ?? `http://${domain}:${proxy.port}`;
  const watcher = new PortsWatcher({
    environments: options.environments,
    network,
    patchStatus: options.patchStatus,
    portUrl: (environment, port) => portUrl(endpoint, environment.metadata.name, port),
    ...(options.scanIntervalMs ? { intervalMs: options.scanIntervalMs } : {}),
    logger: options.logger ?? silentLogger,
  });
  return {
    endpoint,
    proxy,
    startWatcher: () => watcher.start(),
    async close() {
      await watcher.close();
      await proxy.close();
    },
  };
}
