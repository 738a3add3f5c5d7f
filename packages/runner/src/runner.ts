// Entry point of the runner daemon: loads config, prepares the host backend, serves the access API and
// runs the runner's controller (register, heartbeat, watch, reconcile).
import { ApiError, type Condition, WarrenClient } from '@warren/api';
import { InvalidError, type Logger, silentLogger } from '@warren/base';
import { RunnerController } from './controller/index.js';
import { ActivityReporter } from './activity/index.js';
import { SSH_HOST_KEY_INFO, SshGrantSchema } from '@warren/api';
import { type SshGateway, loadOrCreateHostKey, slotForwarder, startSshGateway } from './ssh/index.js';
import { type AccessServer, type AccessServerOptions, createAccessVerifier, startAccessServer } from './access/index.js';
import { type RunnerConfig, type RunnerConfigInput, loadRunnerConfig } from './config.js';
import type { EnvironmentBackend } from './environment/index.js';
import { LinuxBackend, type LinuxBackendOptions } from './linux-backend/index.js';
import { type LxcfsDaemon, startLxcfs } from './linux/index.js';
import { type PortService, startPortService } from './proxy/index.js';
import { CpuBurstController, classCpuTargets } from './resources/index.js';
import { RunnerMetrics } from './metrics/index.js';
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

/** Options of {@link startRunner}. */
export interface StartRunnerOptions {
  /** Server base URL, e.g. `http://127.0.0.1:7080`. */
  server: string;
  /** Runner token (Token of type Runner). */
  token: string;
  /** Runner name (DNS label); an existing Runner of that name is reused. */
  name: string;
  /** Data directory (`WARREN_DATA_DIR`): `runner.json`, `images/`, `environments/`, `slots/`. */
  dataDir: string;
  /** Where the access API listens; port 0 picks a free port. */
  accessListen: { host: string; port: number };
  /** URL clients use to reach the access API when it differs from the bound address (NAT, 0.0.0.0). */
  advertiseUrl?: string;
  /** Overrides of `<dataDir>/runner.json`. */
  config?: RunnerConfigInput;
  logger?: Logger;
  /** The host backend; default the Linux backend (runc, overlayfs, netns, cgroups). Tests pass a fake. */
  backend?: EnvironmentBackend;
  /** Overrides for the default Linux backend (e.g. `firewall: false`, a private runc state root in tests). */
  linux?: Partial<Omit<LinuxBackendOptions, 'dataDir' | 'config' | 'logger'>>;
  /** Injected fetch for the API client (tests). */
  fetch?: typeof fetch;
  /**
   * Port proxy (proxy/service.ts): listen address (default 127.0.0.1:7082), `<port>-<env>.<domain>` domain (default
   * localhost), advertised URL, and who serves the address (default `native`: the C front of docs/design/0008).
   */
  proxy?: {
    listen?: { host: string; port: number };
    domain?: string;
    advertiseUrl?: string;
    scanIntervalMs?: number;
    front?: 'native' | 'node';
  };
  /**
   * Where the SSH gateway listens (conventionally port 2222; port 0 picks a free port); absent: no gateway. Its
   * address is published as `status.endpoints.ssh` (`host:port`, or `sshAdvertise`) and its host key as
   * `status.info.sshHostKey`.
   */
  sshListen?: { host: string; port: number };
  /** `host:port` clients use to reach the SSH gateway when it differs from the bound address. */
  sshAdvertise?: string;
  /** At most one activity update per environment per this many ms (default 30 000; tests use less). */
  activityIntervalMs?: number;
  /**
   * Honest /proc views in environments (docs/design/0013-honest-proc-views.md): the runner runs its own lxcfs on
   * `<dataDir>/lxcfs/root` while it runs. Default true with the Linux backend; without lxcfs or /dev/fuse the
   * runner warns once and reports `HonestProcViews=False`.
   */
  procViews?: boolean;
  /** Terminal sessions: grace period after a dropped socket, scrollback bytes. */
  terminal?: AccessServerOptions['terminal'];
}

/** A running runner daemon. */
export interface RunningRunner {
  runnerId: string;
  /** Base URL of the access API as published in the Runner's status. */
  accessUrl: string;
  config: RunnerConfig;
  /** Resolves once the first list of environments has been queued. */
  synced: Promise<void>;
  /** Who serves the port proxy's address: the native front, or the Node proxy alone (PortProxy.front). */
  proxyFront: 'native' | 'node';
  /**
   * Records user activity in an environment (batched to the server's keepalive, activity/reporter.ts). The
   * SSH gateway and the port proxy take it as their `onActivity` option.
   */
  recordActivity(environmentId: string): void;
  /**
   * The CPU burst controller (docs/design/0015): `latestDecisions()` and `quotaChanges()` for metrics and tests.
   * Undefined when `cpuController: false` in runner.json or with a backend other than the Linux one.
   */
  cpuController: CpuBurstController | undefined;
  /** Resolves when no reconcile is queued or running (tests). */
  idle(): Promise<void>;
  /**
   * Stops the controller, the access API and the runner's lxcfs (safe to call twice). Environments keep running; a
   * restarted runner adopts them. Their lxcfs views are detached first (they read the kernel's /proc files until
   * their next start: docs/design/0013-honest-proc-views.md).
   */
  close(): Promise<void>;
}

/**
 * Starts the runner: loads the config, prepares the backend, starts the access API, registers with the
 * server (retrying while it is unreachable) and starts reconciling the environments scheduled to it.
 * @throws {InvalidError} reason `InvalidRunnerConfig` for a bad runner.json.
 * @throws {ApiError} when the server refuses the token (401/403).
 * @throws {Error} (errno) when the access port cannot be bound.
 */
export async function startRunner(options: StartRunnerOptions): Promise<RunningRunner> {
  const logger = (options.logger ?? silentLogger).child({ component: 'runner', runner: options.name });
  if (!options.backend) await assertSearchableByEnvironments(options.dataDir);
  const config = await loadRunnerConfig(options.dataDir, options.config ?? {});
  const client = new WarrenClient({ server: options.server, token: options.token, ...(options.fetch ? { fetch: options.fetch } : {}) });
  const procViews = options.backend ? undefined : await startProcViews(options.dataDir, options.procViews ?? true, logger);
  const backend =
    options.backend ??
    (await LinuxBackend.create({
      ...options.linux,
      ...(procViews?.daemon ? { procViews: procViews.daemon.views } : {}),
      dataDir: options.dataDir,
      config,
      logger: options.logger ?? silentLogger,
      environmentClass: async (name) => {
        try {
          return (await client.get('EnvironmentClass', name)).spec;
        } catch (error) {
          if (error instanceof ApiError && error.code === 404) return undefined;
          throw error;
        }
      },
    }).catch(async (error: unknown) => {
      await procViews?.daemon?.stop();
      throw error;
    }));

  let controller: RunnerController | undefined;
  let access: AccessServer | undefined;
  let ssh: SshGateway | undefined;
  let ports: PortService | undefined;
  let cpu: CpuBurstController | undefined;
  // Activity from exec, terminals (access API), SSH sessions and proxied requests; sent as keepalives.
  const activity = new ActivityReporter({
    send: (environmentId) => client.keepalive(environmentId),
    ...(options.activityIntervalMs === undefined ? {} : { intervalMs: options.activityIntervalMs }),
    logger: options.logger ?? silentLogger,
  });
  // Hook for the SSH gateway and the port proxy: pass `onActivity` as their `onActivity` option.
  const onActivity = activity.record;
  // Prometheus metrics, read at scrape time from the backend and the controller (created below).
  const metrics = new RunnerMetrics({
    backend,
    environments: () => controller?.environments() ?? [],
    queueDepth: () => controller?.queueDepth() ?? 0,
    logger: options.logger ?? silentLogger,
  });
  try {
    access = await startAccessServer({
      host: options.accessListen.host,
      port: options.accessListen.port,
      backend,
      logger: options.logger ?? silentLogger,
      verify: createAccessVerifier({ server: options.server, runnerId: () => controller?.runnerId ?? '' }),
      onActivity,
      ...(options.terminal ? { terminal: options.terminal } : {}),
      metrics: { render: () => metrics.render(), ...(config.metrics.token ? { token: config.metrics.token } : {}) },
    });
    const accessUrl = options.advertiseUrl ?? access.url;
    let published: { endpoints: { ssh: string }; info: Record<string, string> } | undefined;
    if (options.sshListen) {
      // SSH gateway: every login is decided by the server (POST /api/v1/ssh/authorize with the runner token).
      const hostKey = await loadOrCreateHostKey(options.dataDir);
      ssh = await startSshGateway({
        host: options.sshListen.host,
        port: options.sshListen.port,
        hostKey,
        backend,
        authorize: async (request) => SshGrantSchema.parse(await client.request('POST', '/api/v1/ssh/authorize', request)),
        verify: createAccessVerifier({ server: options.server, runnerId: () => controller?.runnerId ?? '' }),
        ...(options.backend ? {} : { connect: slotForwarder(options.dataDir, config.slotOffset) }),
        onActivity,
        logger: options.logger ?? silentLogger,
      });
      published = { endpoints: { ssh: options.sshAdvertise ?? ssh.address }, info: { [SSH_HOST_KEY_INFO]: hostKey.publicKey } };
    }
    // Port URLs: the proxy and the watcher of listening ports (status.ports); the controller exists only below.
    ports = await startPortService({
      ...options.proxy,
      server: options.server,
      dataDir: options.dataDir,
      backend,
      runnerId: () => controller?.runnerId ?? '',
      environments: () => controller?.environments() ?? [],
      patchStatus: (id, change) => controller?.patchStatus(id, change) ?? Promise.resolve(undefined),
      onActivity,
      logger: options.logger ?? silentLogger,
    });
    const proxyEndpoint = ports.endpoint;
    const publish = () => ({
      endpoints: { ...published?.endpoints, proxy: proxyEndpoint },
      ...(published ? { info: published.info } : {}),
      ...(procViews ? { conditions: [procViews.condition] } : {}),
    });
    controller = new RunnerController({
      client,
      name: options.name,
      config,
      backend,
      accessUrl,
      publish,
      logger: options.logger ?? silentLogger,
      onReconcile: (durationMs, outcome) => metrics.observeReconcile(durationMs, outcome),
    });
    await controller.start();
    ports.startWatcher();
    // CPU burst controller (docs/design/0015): each environment's CFS quota between its class's request and limit.
    if (backend instanceof LinuxBackend && config.cpuController) {
      const running = controller;
      cpu = new CpuBurstController({
        cgroups: backend.cgroups,
        targets: classCpuTargets({
          environments: () => running.environments(),
          environmentClass: async (name) => {
            try {
              return (await client.get('EnvironmentClass', name)).spec;
            } catch (error) {
              if (error instanceof ApiError && error.code === 404) return undefined;
              throw error;
            }
          },
          logger: options.logger ?? silentLogger,
        }),
        reservedMillicores: config.reserved.cpuMillicores,
        logger: options.logger ?? silentLogger,
      });
      cpu.start();
    }
    const cpuController = cpu;
    logger.info({ runnerId: controller.runnerId, accessUrl }, 'runner started');
    const started = controller;
    const server = access;
    const gateway = ssh;
    const portService = ports;
    let closing: Promise<void> | undefined;
    return {
      runnerId: started.runnerId,
      accessUrl,
      config,
      synced: started.synced,
      proxyFront: portService.proxy.front,
      recordActivity: onActivity,
      idle: () => started.idle(),
      cpuController,
      close() {
        // Once: a second call (a test's harness after the test stopped the runner itself) waits for the first.
        closing ??= (async () => {
          await Promise.all([started.close(), cpuController?.close()]);
          await server.close();
          await gateway?.close();
          await portService.close();
          await activity.close();
          await procViews?.daemon?.stop();
          logger.info({}, 'runner stopped');
        })();
        return closing;
      },
    };
  } catch (error) {
    await cpu?.close().catch(() => {});
    await controller?.close().catch(() => {});
    await access?.close().catch(() => {});
    await ssh?.close().catch(() => {});
    await ports?.close().catch(() => {});
    await activity.close().catch(() => {});
    await procViews?.daemon?.stop();
    throw error;
  }
}

/**
 * Starts the runner's lxcfs on `<dataDir>/lxcfs` (linux/lxcfs.ts) unless disabled.
 * @returns the daemon when it runs, and the runner's `HonestProcViews` condition (True, or False with the reason:
 *   `Disabled`, `LxcfsNotInstalled`, `FuseUnavailable`, `LxcfsFailed`); never throws, environments start either way.
 */
async function startProcViews(dataDir: string, enabled: boolean, logger: Logger): Promise<{ daemon?: LxcfsDaemon; condition: Condition }> {
  const lastTransitionTime = new Date().toISOString();
  if (!enabled) {
    const message = 'honest /proc views are turned off for this runner';
    return { condition: { type: 'HonestProcViews', status: 'False', reason: 'Disabled', message, lastTransitionTime } };
  }
  const started = await startLxcfs({ dir: join(dataDir, 'lxcfs'), logger });
  if ('unavailable' in started) {
    const { reason, message } = started.unavailable;
    logger.warn({ reason, message }, 'lxcfs unavailable: environments see the host in /proc/meminfo, /proc/cpuinfo and /proc/stat');
    return { condition: { type: 'HonestProcViews', status: 'False', reason, message, lastTransitionTime } };
  }
  const message = `lxcfs (pid ${started.daemon.pid}) serves ${started.daemon.views.paths.join(', ')}`;
  return {
    daemon: started.daemon,
    condition: { type: 'HonestProcViews', status: 'True', reason: 'LxcfsRunning', message, lastTransitionTime },
  };
}

/**
 * Checks that every existing directory above `dataDir` can be searched (`x` for "others"; the data dir itself
 * is made searchable by the Linux backend):
 * environments run as unprivileged host uids (their user namespace range), and the OCI runtime, entering that
 * user namespace, must reach their rootfs and workspace under the data dir (path_resolution(7)).
 * @throws {InvalidError} reason `InvalidRunnerConfig` naming the first directory that blocks, with the fix.
 */
export async function assertSearchableByEnvironments(dataDir: string): Promise<void> {
  let current = dirname(resolve(dataDir));
  const chain: string[] = [];
  for (;;) {
    chain.unshift(current);
    const parent = dirname(current);
    if (parent === current) break;
    current = parent;
  }
  for (const directory of chain) {
    let mode: number;
    try {
      mode = (await stat(directory)).mode;
    } catch {
      return; // the rest does not exist yet; the runner creates it with a searchable mode
    }
    if ((mode & 0o001) === 0) {
      throw new InvalidError(
        `the runner data directory ${dataDir} is inside ${directory} (mode ${(mode & 0o777).toString(8)}), which environments cannot enter: ` +
          `their processes run as unprivileged host users. Run "chmod o+x ${directory}" or choose another --data-dir`,
        [{ field: 'dataDir', message: `${directory} is not searchable by other users` }],
        'InvalidRunnerConfig',
      );
    }
  }
}
