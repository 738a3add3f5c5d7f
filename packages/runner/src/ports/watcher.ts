// Port detection: while an environment runs, lists its listening TCP ports about once a second and keeps
// `status.ports` in step (Spec ports, Devcontainer forwardPorts and Detected ports, each with visibility and url).
import type { Environment, EnvironmentStatus } from '@warren/api';
import { type Logger, errorMessage, silentLogger, sleep } from '@warren/base';
import type { EnvironmentNetwork } from '../environment/index.js';
import { listListeningPorts } from './listening.js';

type StatusPort = EnvironmentStatus['ports'][number];

/** Options of {@link PortsWatcher}. */
export interface PortsWatcherOptions {
  /** The environments this runner reconciles, freshest known objects (RunnerController.environments). */
  environments: () => Environment[];
  /** Where a running environment is (LinuxBackend.network); undefined when it is not running. */
  network: (environmentId: string) => Promise<EnvironmentNetwork | undefined>;
  /** Writes a status change guarded by resourceVersion (RunnerController.patchStatus). */
  patchStatus: (environmentId: string, change: (status: EnvironmentStatus) => EnvironmentStatus | undefined) => Promise<unknown>;
  /** URL of a port of an environment through the port proxy, without token; undefined when there is no proxy. */
  portUrl?: (environment: Environment, port: number) => string | undefined;
  /** Listening ports of a process's network namespace (default: /proc/<pid>/net/tcp{,6}). */
  listPorts?: (pid: number) => Promise<number[]>;
  /** Interval between two scans, in ms (default 1000). */
  intervalMs?: number;
  logger?: Logger;
}

/**
 * The wanted `status.ports` of an environment: the reconciler's Devcontainer entries (kept, so their labels
 * stay), then spec ports, then detected listening ports not already listed, sorted by port. Visibility comes
 * from `spec.ports` (default Owner).
 * Pure; exported for tests.
 */
export function wantedPorts(
  environment: Environment,
  listening: readonly number[],
  portUrl?: (port: number) => string | undefined,
): StatusPort[] {
  const visibility = new Map(environment.spec.ports.map((entry) => [entry.port, entry.visibility]));
  const byPort = new Map<number, StatusPort>();
  const add = (entry: Omit<StatusPort, 'visibility' | 'url'>) => {
    if (byPort.has(entry.port)) return;
    const url = portUrl?.(entry.port);
    byPort.set(entry.port, { ...entry, visibility: visibility.get(entry.port) ?? 'Owner', ...(url ? { url } : {}) });
  };
  for (const entry of environment.status.ports) {
    if (entry.source === 'Devcontainer') add({ port: entry.port, source: 'Devcontainer', ...(entry.label ? { label: entry.label } : {}) });
  }
  for (const entry of environment.spec.ports) add({ port: entry.port, source: 'Spec' });
  for (const port of listening) add({ port, source: 'Detected' });
  return [...byPort.values()].sort((a, b) => a.port - b.port);
}

/** Order-insensitive comparison of two port lists. */
function samePorts(a: readonly StatusPort[], b: readonly StatusPort[]): boolean {
  const key = (ports: readonly StatusPort[]) =>
    JSON.stringify([...ports].sort((x, y) => x.port - y.port).map((p) => [p.port, p.source, p.visibility, p.url ?? '', p.label ?? '']));
  return key(a) === key(b);
}

/**
 * Scans every Running environment of this runner each `intervalMs` and writes `status.ports` when it
 * differs from what is wanted ({@link wantedPorts}); for environments that are not Running, Detected entries
 * are removed. Level-triggered: it compares with the freshest status each time, so a concurrent writer that
 * drops its entries (the reconciler writes whole statuses) is corrected on the next scan. A new listening
 * port therefore appears in `status.ports` within about `intervalMs` plus one API write.
 */
export class PortsWatcher {
  private readonly logger: Logger;
  private readonly controller = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly options: PortsWatcherOptions) {
    this.logger = (options.logger ?? silentLogger).child({ component: 'ports' });
  }

  /** Starts scanning (idempotent). */
  start(): void {
    this.loop ??= this.run();
  }

  /** Stops scanning and waits for the scan in progress. */
  async close(): Promise<void> {
    this.controller.abort();
    await this.loop;
  }

  /** One pass over every environment; exported for tests. Errors are logged per environment, never thrown. */
  async scan(): Promise<void> {
    await Promise.all(this.options.environments().map((environment) => this.scanOne(environment)));
  }

  private async run(): Promise<void> {
    const interval = this.options.intervalMs ?? 1000;
    while (!this.controller.signal.aborted) {
      await this.scan();
      await sleep(interval, this.controller.signal).catch(() => {});
    }
  }

  private async scanOne(environment: Environment): Promise<void> {
    const id = environment.metadata.id;
    try {
      const running = environment.status.phase === 'Running' && environment.spec.desiredPhase === 'Running';
      const network = running ? await this.options.network(id) : undefined;
      const portUrl = (port: number) => this.options.portUrl?.(environment, port);
      if (!network) {
        if (!environment.status.ports.some((entry) => entry.source === 'Detected')) return;
        await this.options.patchStatus(id, (status) => {
          const ports = status.ports.filter((entry) => entry.source !== 'Detected');
          return ports.length === status.ports.length ? undefined : { ...status, ports };
        });
        return;
      }
      const listening = await (this.options.listPorts ?? listListeningPorts)(network.pid);
      if (samePorts(environment.status.ports, wantedPorts(environment, listening, portUrl))) return;
      await this.options.patchStatus(id, (status) => {
        const wanted = wantedPorts({ ...environment, status }, listening, portUrl);
        return samePorts(status.ports, wanted) ? undefined : { ...status, ports: wanted };
      });
      this.logger.debug({ environmentId: id, listening }, 'ports updated');
    } catch (error) {
      if (this.controller.signal.aborted) return;
      this.logger.warn({ environmentId: id, error: errorMessage(error) }, 'port scan failed');
    }
  }
}
