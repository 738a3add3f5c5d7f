// The Linux EnvironmentBackend: composes git clone, devcontainer resolution, the image store, idmapped
// overlay root filesystems, user + network namespaces, cgroups and runc into environments.
// Every step is idempotent and every observation comes from the host (mounts, runc state, files).
// This class only prepares the host and holds the shared objects; each step lives in its own module of this
// folder (paths and state file, content, resolve, start, exec, lifecycle, teardown), taking a BackendContext.
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Environment, EnvironmentStats } from '@warren/api';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import type {
  EnvironmentBackend,
  EnvironmentNetwork,
  ExecRequest,
  ExecSession,
  LifecycleOutcome,
  ObservedEnvironment,
  ResolvedEnvironment,
  StepContext,
} from '../environment/index.js';
import { ImageStore } from '../image/index.js';
import {
  CgroupManager,
  type EnvironmentDns,
  type ExecCgroup,
  type OciRuntime,
  SlotAllocator,
  applyFirewall,
  ensureBackgroundCgroup,
  ensureExecAgent,
  ensureIdmapHelper,
  environmentDns,
  selectOciRuntime,
} from '../linux/index.js';
import { prepareContent } from './content.js';
import type { BackendContext, LinuxBackendOptions } from './context.js';
import { execInEnvironment } from './exec.js';
import { runLifecycle } from './lifecycle.js';
import { environmentNetwork, listEnvironments, observeEnvironment } from './observe.js';
import { environmentPaths } from './paths.js';
import { EnvironmentResolver } from './resolve.js';
import { prepareHost, startEnvironment } from './start.js';
import { cleanupOrphans, removeEnvironment, stopEnvironment } from './teardown.js';
import { environmentStats } from './stats.js';

/** The Linux host backend (runc, overlayfs with idmapped layers, user + network namespaces, cgroups). */
export class LinuxBackend implements EnvironmentBackend {
  readonly dataDir: string;
  readonly images: ImageStore;
  /** What every module of this folder is handed. */
  private readonly context: BackendContext;

  /** The environments' cgroups (the CPU burst controller of resources/ reads and writes them). */
  get cgroups(): CgroupManager {
    return this.context.cgroups;
  }
  private readonly resolver: EnvironmentResolver;

  private constructor(
    options: LinuxBackendOptions,
    runtime: OciRuntime,
    cgroups: CgroupManager,
    helperPath: string,
    dns: EnvironmentDns,
    /** The compiled exec agent (host path), or undefined when disabled or unavailable. */
    agentPath: string | undefined,
    /** Warren's background cgroup for layer unpack and clone (docs/design/0012-io-limits.md). */
    backgroundCgroup: ExecCgroup | undefined,
  ) {
    this.dataDir = options.dataDir;
    const logger = (options.logger ?? silentLogger).child({ component: 'linux-backend' });
    this.images = new ImageStore(
      join(this.dataDir, 'images'),
      {
        mirrors: options.config.mirrors,
        credentials: options.config.credentials,
        insecureRegistries: options.config.insecureRegistries,
      },
      logger,
      backgroundCgroup ? { cgroup: backgroundCgroup } : {},
    );
    const slots = new SlotAllocator(this.dataDir, { logger });
    this.context = {
      dataDir: this.dataDir,
      options,
      logger,
      images: this.images,
      slots,
      runtime,
      cgroups,
      helperPath,
      dns,
      agentPath,
      backgroundCgroup,
    };
    this.resolver = new EnvironmentResolver(this.context, options.builder);
  }

  /**
   * Prepares the host: data directories (given search permission for others, since container roots are
   * unprivileged host uids that must reach their mounts), the idmap helper and the exec agent (compiled on first
   * use; without a static libc the agent is left out with a warning), cgroup detection, the environments' DNS
   * configuration and the nftables firewall.
   * @throws {IdmapHelperError} without a C compiler; {@link CgroupError} without cgroups; {ExecError}
   *   when nft fails.
   */
  static async create(options: LinuxBackendOptions): Promise<LinuxBackend> {
    const logger = options.logger ?? silentLogger;
    const environments = join(options.dataDir, 'environments');
    await mkdir(environments, { recursive: true });
    // The container's root (an unprivileged host uid) must traverse these to reach its bind mounts and
    // root filesystem (runc mounts them after entering the user namespace): search permission only.
    for (const dir of [options.dataDir, environments]) {
      const mode = (await stat(dir)).mode & 0o7777;
      if ((mode & 0o001) === 0) await chmod(dir, mode | 0o111);
    }
    const helperPath = await ensureIdmapHelper(join(options.dataDir, 'bin'), { logger });
    let agentPath: string | undefined;
    if (options.execAgent !== false) {
      agentPath = await ensureExecAgent(join(options.dataDir, 'bin'), { logger }).catch((error: unknown) => {
        logger.warn(
          { error: errorMessage(error) },
          'exec agent unavailable: containers run without it and execs go through the OCI runtime',
        );
        return undefined;
      });
    }
    const cgroups = options.cgroups ?? (await CgroupManager.detect({}));
    // Warren's own heavy IO (layer unpack, clone) runs in a group of its own with its own IO limit and the CPU weight
    // of Warren's reserve (0012).
    const backgroundCgroup = await ensureBackgroundCgroup(cgroups, {
      paths: [options.dataDir],
      io: options.config.io.background,
      cpuRequestMillicores: options.config.reserved.cpuMillicores,
      logger,
    });
    const runtime = options.runtime ?? (await selectOciRuntime({ prefer: options.config.runtime, logger }));
    const dns = await environmentDns({ logger });
    if (dns.warning) logger.warn({ warning: dns.warning }, 'environments get no DNS resolver');
    if (options.firewall !== false) await applyFirewall({ hostDnsAddresses: dns.hostDnsAddresses, logger });
    return new LinuxBackend(options, runtime, cgroups, helperPath, dns, agentPath, backgroundCgroup);
  }

  /** {@inheritDoc EnvironmentBackend.observe} */
  observe(environmentId: string): Promise<ObservedEnvironment> {
    return observeEnvironment(this.context, environmentId);
  }

  /** {@inheritDoc EnvironmentBackend.listEnvironments} */
  listEnvironments(): Promise<string[]> {
    return listEnvironments(this.context);
  }

  /** {@inheritDoc EnvironmentBackend.lifecycleLogPath} */
  lifecycleLogPath(environmentId: string): string {
    return environmentPaths(this.dataDir, environmentId).lifecycleLog;
  }

  /** The veth address of the environment's slot and its container's init pid; undefined unless running. */
  network(environmentId: string): Promise<EnvironmentNetwork | undefined> {
    return environmentNetwork(this.context, environmentId);
  }

  /** {@inheritDoc EnvironmentBackend.stats} */
  stats(environmentId: string): Promise<EnvironmentStats | undefined> {
    return environmentStats(this.context, environmentId);
  }

  /** Claims the slot and makes its user + network namespaces and network (all idempotent; start repeats the checks). */
  prepareHost(environment: Environment, context: StepContext): Promise<void> {
    return prepareHost(this.context, environment, context);
  }

  /** {@inheritDoc EnvironmentBackend.prepareContent} */
  prepareContent(environment: Environment, context: StepContext): Promise<{ commit?: string }> {
    return prepareContent(this.context, environment, context);
  }

  /** {@inheritDoc EnvironmentBackend.resolve} */
  resolve(environment: Environment, context: StepContext): Promise<ResolvedEnvironment> {
    return this.resolver.resolve(environment, context);
  }

  /** {@inheritDoc EnvironmentBackend.start} */
  start(environment: Environment, context: StepContext): Promise<void> {
    return startEnvironment(this.context, environment, context);
  }

  /**
   * Starts `request` in the running environment (through the container's exec agent when it can, else the OCI
   * runtime; see {@link execInEnvironment}).
   * @throws {EnvironmentNotRunningError} when the container is not running.
   * @throws {InvalidError} reason `UnknownContainerUser` for a user name the image does not have.
   */
  exec(environmentId: string, request: ExecRequest, logger: Logger): Promise<ExecSession> {
    return execInEnvironment(this.context, environmentId, request, logger, true);
  }

  /** {@inheritDoc EnvironmentBackend.runLifecycle} */
  runLifecycle(environment: Environment, stage: 'create' | 'start', context: StepContext): Promise<LifecycleOutcome> {
    return runLifecycle(this.context, environment, stage, context);
  }

  /**
   * Stops the container and releases its cgroup and every mount; the slot and its namespaces and network stay
   * for the next start (see {@link stopEnvironment}). {@link remove} releases them.
   */
  stop(environmentId: string, graceSeconds: number, context: StepContext): Promise<void> {
    return stopEnvironment(this.context, environmentId, graceSeconds, context);
  }

  /** {@inheritDoc EnvironmentBackend.remove} */
  remove(environmentId: string, context: StepContext): Promise<void> {
    return removeEnvironment(this.context, environmentId, context);
  }

  /** {@inheritDoc EnvironmentBackend.cleanupOrphans} */
  cleanupOrphans(knownIds: ReadonlySet<string>, context: StepContext): Promise<string[]> {
    return cleanupOrphans(this.context, knownIds, context);
  }
}
