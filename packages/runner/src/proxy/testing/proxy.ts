// Setup shared by the port proxy's tests (tests only): environments as the runner knows them, a proxy on a free
// loopback port over them (Node or native front), and the teardown of proxy and app.
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { Environment } from '@warren/api';
import { type PortProxy, type PortProxyOptions, startPortProxy } from '../server.js';
import { SessionSigner } from '../session.js';
import { TEST_FRONT_BIN_DIR } from './front-bin.js';

/** The runner id the proxy tests' environments and port tokens name. */
export const RUNNER_ID = 'run-test';

/**
 * An environment of runner {@link RUNNER_ID} owned by `ownerId`: phase `Running` unless `options.phase` says
 * otherwise, with `options.publicPorts` (default none) Public and every other port Owner.
 */
export function environment(
  id: string,
  name: string,
  ownerId: string,
  options: { phase?: 'Running' | 'Stopped'; publicPorts?: number[] } = {},
): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name, generation: 1, resourceVersion: '1', createdTime: new Date(0).toISOString(), labels: {}, ownerId },
    spec: {
      desiredPhase: 'Running',
      source: { git: { url: 'https://example.com/r.git' } },
      devcontainer: {},
      className: 'default',
      ports: (options.publicPorts ?? []).map((port) => ({ port, visibility: 'Public' as const })),
      timeouts: { inactivitySeconds: 0 },
    },
    status: { phase: options.phase ?? 'Running', observedGeneration: 1, conditions: [], ports: [], runnerId: RUNNER_ID },
  };
}

/** The proxy option that serves the address with `front`: the native front compiled into the tests' cache, or none. */
export function frontOption(front: 'node' | 'native'): Pick<PortProxyOptions, 'nativeFront'> {
  return front === 'native' ? { nativeFront: { binDir: TEST_FRONT_BIN_DIR } } : {};
}

/** A `network` option reaching environment `id` at `addresses[id]` in this network namespace (pid 0); others are not running. */
export function loopbackNetwork(addresses: Record<string, string>): PortProxyOptions['network'] {
  return (id) => Promise.resolve(addresses[id] ? { address: addresses[id], pid: 0 } : undefined);
}

/**
 * Starts a port proxy on `127.0.0.1`, a free port, serving `environments` as they are at each request; `options`
 * must give `network` and may override the rest: tokens are refused and sessions signed with a new random key.
 */
export function startTestProxy(
  environments: Environment[],
  options: Pick<PortProxyOptions, 'network'> & Partial<PortProxyOptions>,
): Promise<PortProxy> {
  return startPortProxy({
    host: '127.0.0.1',
    port: 0,
    environments: () => environments,
    verifyToken: () => Promise.reject(new Error('no tokens in this test')),
    sessions: new SessionSigner(randomBytes(32)),
    ...options,
  });
}

/** Closes the proxy (if started), then the app (if started) with the connections it still has open. */
export async function closeProxyAndApp(proxy: PortProxy | undefined, app: Server | undefined): Promise<void> {
  await proxy?.close();
  if (!app) return;
  app.closeAllConnections();
  await new Promise((resolve) => app.close(resolve));
}
