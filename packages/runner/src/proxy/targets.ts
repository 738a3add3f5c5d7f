// The port proxy's targets: where an environment's port is reached — its veth address over TCP, or, for a port bound
// only to the environment's loopback, from inside its network namespace (ports/loopback.ts) — with the lookups
// cached for NETWORK_CACHE_MS and the slow path's keep-alive pools (TCP, and one per namespace).
import { Agent, type RequestOptions } from 'node:http';
import type { Logger } from '@warren/base';
import type { EnvironmentNetwork } from '../environment/index.js';
import { connectInNamespace, listListeningSockets, loopbackOnly } from '../ports/index.js';
import { NamespaceConnectionPool } from './namespace-connection-pool.js';
import type { RelayTarget } from './relay.js';

/** How long the proxy reuses an environment's network lookup (and a port's loopback-only check), in ms. */
export const NETWORK_CACHE_MS = 1000;

/** How a slow-path request to an app connects: the options spread into `http.request`. */
export type HttpConnection = Pick<RequestOptions, 'host' | 'agent' | 'createConnection'>;

/** Where the native front connects for a granted request: the veth address, or the namespace of this process. */
export type FrontTarget = { address: string } | { pid: number };

/**
 * Resolves an environment's port to a connectable target for the three ways the proxy connects (the slow path's
 * `http.request`, the Node fast path's relay, the native front), and owns the slow path's connection pools.
 */
export class ProxyTargets {
  // Keep-alive to the apps: a new TCP connection per request would cost more than the proxying itself.
  private readonly tcpPool = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 64 });
  // Where each environment is, for NETWORK_CACHE_MS: the backend reads its slot claim and runc's state file (a
  // large JSON document) on every call, which cost more than the proxying itself (bench/access). Only a running
  // environment's network is kept, so a started one is reachable at once; a stopped one answers 502 instead of
  // 503 for at most that long (its phase is still checked on every request).
  private readonly networks = new Map<string, { network: Promise<EnvironmentNetwork | undefined>; expiresAt: number }>();
  // Whether a port listens on the environment's loopback only, per pid and port, for NETWORK_CACHE_MS.
  private readonly loopbackPorts = new Map<string, { loopback: Promise<boolean>; expiresAt: number }>();
  // Keep-alive helper connections for loopback-only ports, one pool per environment process (its namespace).
  private readonly namespacePools = new Map<number, NamespaceConnectionPool>();

  /**
   * @param lookup where a running environment is reachable (LinuxBackend.network); undefined when not running.
   */
  constructor(
    private readonly lookup: (environmentId: string) => Promise<EnvironmentNetwork | undefined>,
    private readonly logger: Logger,
  ) {}

  /**
   * Where a running environment is reachable, from the cache when looked up less than {@link NETWORK_CACHE_MS} ago.
   * @returns undefined when it is not running (not cached).
   * @throws what the lookup throws (not cached).
   */
  network(environmentId: string): Promise<EnvironmentNetwork | undefined> {
    const now = performance.now();
    const cached = this.networks.get(environmentId);
    if (cached && cached.expiresAt > now) return cached.network;
    const network = this.lookup(environmentId).then(
      (found) => {
        if (!found) this.networks.delete(environmentId);
        return found;
      },
      (error: unknown) => {
        this.networks.delete(environmentId);
        throw error;
      },
    );
    this.networks.set(environmentId, { network, expiresAt: now + NETWORK_CACHE_MS });
    return network;
  }

  /**
   * Whether a port listens on the environment's loopback only (then it is reached from inside its namespace,
   * ports/loopback.ts), from /proc/<pid>/net/tcp{,6}, kept {@link NETWORK_CACHE_MS} per pid and port.
   * @returns false when the sockets cannot be read.
   */
  isLoopbackOnly(pid: number, port: number): Promise<boolean> {
    const key = `${pid}:${port}`;
    const now = performance.now();
    const cached = this.loopbackPorts.get(key);
    if (cached && cached.expiresAt > now) return cached.loopback;
    const loopback = listListeningSockets(pid).then(
      (sockets) => loopbackOnly(sockets, port),
      () => false,
    );
    if (this.loopbackPorts.size > 4096) this.loopbackPorts.clear();
    this.loopbackPorts.set(key, { loopback, expiresAt: now + NETWORK_CACHE_MS });
    return loopback;
  }

  /**
   * How a slow-path request connects: the keep-alive TCP pool to the veth address, or for a loopback-only port the
   * keep-alive pool of helpers in its namespace; an upgrade gets a connection of its own either way.
   */
  async httpConnection(network: EnvironmentNetwork, port: number, upgrade: boolean): Promise<HttpConnection> {
    if (!(await this.isLoopbackOnly(network.pid, port))) return { host: network.address, agent: upgrade ? false : this.tcpPool };
    if (!upgrade) return { host: '127.0.0.1', agent: this.namespacePoolOf(network.pid) };
    return { host: '127.0.0.1', createConnection: () => connectInNamespace(`/proc/${network.pid}/ns/net`, port, this.logger) };
  }

  /**
   * Where the Node fast path connects: the environment's veth address, or for a loopback-only port one helper in its
   * namespace for the whole client connection (ports/loopback.ts); undefined (slow path) when it is not running.
   */
  async relayTarget(admission: { environmentId: string; port: number }): Promise<RelayTarget | undefined> {
    const network = await this.network(admission.environmentId);
    if (!network) return undefined;
    if (await this.isLoopbackOnly(network.pid, admission.port)) {
      return { open: () => connectInNamespace(`/proc/${network.pid}/ns/net`, admission.port, this.logger) };
    }
    return { host: network.address, port: admission.port };
  }

  /**
   * Where the native front connects: the veth address, or for a loopback-only port the environment's process,
   * whose namespace the front enters itself; undefined when the environment is not running.
   */
  async frontTarget(environmentId: string, port: number): Promise<FrontTarget | undefined> {
    const network = await this.network(environmentId);
    if (!network) return undefined;
    return (await this.isLoopbackOnly(network.pid, port)) ? { pid: network.pid } : { address: network.address };
  }

  /** Closes the pools' connections (idle and in use) and kills their helpers. */
  destroy(): void {
    this.tcpPool.destroy();
    for (const pool of this.namespacePools.values()) pool.destroy();
    this.namespacePools.clear();
  }

  private namespacePoolOf(pid: number): NamespaceConnectionPool {
    let found = this.namespacePools.get(pid);
    if (!found) {
      found = new NamespaceConnectionPool(`/proc/${pid}/ns/net`, this.logger, (idle) => {
        if (this.namespacePools.get(pid) === idle) this.namespacePools.delete(pid);
      });
      this.namespacePools.set(pid, found);
    }
    return found;
  }
}
