// The Linux EnvironmentBackend: composes git clone, devcontainer resolution, the image store, idmapped
// overlay root filesystems, user + network namespaces, cgroups and runc into environments.
// Every step is idempotent and every observation comes from the host (mounts, runc state, files).
//
// Layout under `<dataDir>`:
//   images/                     ImageStore root (shared, read-only layers)
//   bin/                        the compiled idmap helper and exec agent (the containers' init)
//   slots/                      slot claims (uid range, subnet, kernel object names per environment)
//   environments/<id>/
//     workspace/                the clone, bind-mounted at workspaceFolder
//     upper/ work/ lower/<i>/   overlay upper and work dirs, idmapped views of the image layers
//     rootfs/                   overlay mount point (the OCI root.path)
//     bundle/config.json        the OCI config
//     agent/                      the exec agent's directory (owned by the container's root, mode 0700), at
//                                 /dev/.warren in the container: exec.sock, and the init binary's mountpoint
//     resolv.conf hosts hostname
//     logs/lifecycle.log        lifecycle command output (`warren env logs`)
//     state.json                resolved devcontainer, image, lifecycle markers
import type { ChildProcess } from 'node:child_process';
import { open as openFile, readFile as readFileSync } from 'node:fs/promises';
import { appendFile, chmod, chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Environment, EnvironmentClassSpec } from '@warren/api';
import { repositoryBasename } from '@warren/api';
import { InvalidError, type Logger, WarrenError, errorMessage, silentLogger } from '@warren/base';
import type { RunnerConfig } from '../config.js';
import { loadDevcontainerConfig } from '../devcontainer/locate.js';
import { type LifecycleCommand, type LifecycleStep, type ResolvedDevcontainer, resolveDevcontainer, resolveRemoteEnv } from '../devcontainer/merge.js';
import { INVALID_DEVCONTAINER_CONFIG } from '../devcontainer/parse.js';
import {
  ImageNotFoundError,
  InvalidReferenceError,
  NoMatchingPlatformError,
  RegistryUnauthorizedError,
} from '../image/errors.js';
import { type ImageInfo, ImageStore } from '../image/image-store.js';
import { DevcontainerBuilder } from '../builder/devcontainer-builder.js';
import { DockerEngine } from '../builder/docker-engine.js';
import { BaseImageNotFoundError, DevcontainerBuildError, DockerNotInstalledError } from '../builder/errors.js';
import { type CgroupLimits, CgroupManager, ociLinuxResources } from '../linux/cgroups.js';
import { exec, spawnLogged } from '../linux/exec.js';
import {
  AGENT_DIR_IN_CONTAINER,
  AGENT_SOCKET_NAME,
  ExecAgentUnavailableError,
  INIT_PATH_IN_CONTAINER,
  ensureExecAgent,
  execViaAgent,
  initArgs,
} from '../linux/exec-agent.js';
import { loadNodePty, spawnUnderPty } from '../linux/pty.js';
import { GitError, cloneRepository } from '../linux/git.js';
import { createEnvironmentNamespaces, deleteEnvironmentNamespaces, ensureIdmapHelper, readMountInfo, unmountRecursive } from '../linux/idmap.js';
import { listNetworkObjects, setupNetwork, teardownNetwork, environmentDns, type EnvironmentDns } from '../linux/network.js';
import { applyFirewall } from '../linux/nft.js';
import { buildOciConfig } from '../linux/oci-spec.js';
import { mountRootfs, unmountRootfs } from '../linux/overlay.js';
import { type ContainerState as RuntimeState, type OciRuntime, selectOciRuntime, stopContainer } from '../linux/runtime.js';
import { KERNEL_OBJECT_PREFIX, SlotAllocator, slotInfo, type SlotInfo } from '../linux/slots.js';
import {
  type ContainerState,
  type EnvironmentBackend,
  type EnvironmentNetwork,
  EnvironmentNotRunningError,
  type ExecRequest,
  type ExecSession,
  type LifecycleOutcome,
  type ObservedEnvironment,
  type ResolvedEnvironment,
  type StepContext,
  TerminalEnvironmentError,
} from './backend.js';
import { type ContainerUser, type UserCache, cachedUser, resolveUsersCached } from './users.js';

/**
 * The keep-alive process of `overrideCommand: true` when the exec agent is unavailable (no static libc to
 * build it): a PID-1-safe loop that exits 0 on SIGTERM. With the agent, its init plays this part.
 */
export const KEEP_ALIVE_COMMAND = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1000 & wait $!; done'];

/** Least time between two registry lookups of one stored tag on the start path (background refresh), ms. */
const TAG_REFRESH_MS = 5 * 60_000;

/** Prefix of container ids; the rest is the environment id (so a restarted runner can map them back). */
export const CONTAINER_PREFIX = `${KERNEL_OBJECT_PREFIX}-`;

const STATE_FILE = 'state.json';
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What the backend persists per environment (`state.json`). */
interface EnvironmentStateFile {
  version: 1;
  environmentId: string;
  commit?: string;
  resolved?: {
    devcontainer: ResolvedDevcontainer;
    summary: ResolvedEnvironment;
    image: { reference: string; digest: string; layers: string[]; env: string[]; entrypoint: string[]; cmd: string[] };
  };
  /** Host uid:gid the workspace was chowned to (the remote user shifted into the environment's range). */
  workspaceOwner?: string;
  lifecycle: { createDone: boolean; postStartDoneFor?: string; failure?: string };
  container?: { startId: string; startedTime: string };
  /** containerUser and remoteUser (and their specs' ids) resolved in the rootfs, valid while /etc/passwd and /etc/group are unchanged. */
  users?: UserCache;
}

/** Options of {@link LinuxBackend.create}. */
export interface LinuxBackendOptions {
  dataDir: string;
  config: RunnerConfig;
  logger?: Logger;
  /** Looks up an EnvironmentClass's limits by name (from the server); `undefined` = no limits. */
  environmentClass?: (name: string) => Promise<EnvironmentClassSpec | undefined>;
  /**
   * OCI runtime; default chosen by `config.runtime` ({@link selectOciRuntime}: runc under `/run/warren/runc`
   * or crun under `/run/warren/crun`, each also driving containers found under the other's state root).
   */
  runtime?: OciRuntime;
  /** cgroup manager; default detected for the host, parent `warren`. */
  cgroups?: CgroupManager;
  /** Builder backend for configs with `build`/`features`; default a DevcontainerBuilder on a Docker engine under `<dataDir>/builder`. */
  builder?: DevcontainerBuilder;
  /** Allow `file://` repository URLs (tests, single-user hosts); default false. */
  allowFileUrls?: boolean;
  /** Apply the nftables firewall at start (default true). */
  firewall?: boolean;
  /** Directory of the persistent user namespaces (default `/run/warren/userns`). */
  userNamespaceDir?: string;
  /**
   * Let {@link LinuxBackend.cleanupOrphans} also remove `warren-<k>` namespaces and `warren<k>h` links of
   * slots that no environment of this data dir claims. Default false: such objects cannot be attributed
   * to this runner (another runner or a test on the same host may own them); enable it on hosts with
   * exactly one runner.
   */
  sweepUnclaimedNetworks?: boolean;
  /**
   * Run the exec agent as each new container's init and exec through it (default true). Without it (or when it
   * cannot be compiled) containers run the keep-alive shell loop or the image command directly and every exec
   * goes through the OCI runtime. Containers that have an agent are exec'd through it either way.
   */
  execAgent?: boolean;
}

/** The Linux host backend (runc, overlayfs with idmapped layers, user + network namespaces, cgroups). */
export class LinuxBackend implements EnvironmentBackend {
  readonly dataDir: string;
  readonly images: ImageStore;
  private readonly slots: SlotAllocator;
  private readonly logger: Logger;
  /** Created on the first config that needs a build (starting Docker only then). */
  private builder: DevcontainerBuilder | undefined;
  /** When a background refresh of each tag last started, ms since the epoch. */
  private readonly tagRefreshedAt = new Map<string, number>();

  private constructor(
    private readonly options: LinuxBackendOptions,
    private readonly runtime: OciRuntime,
    private readonly cgroups: CgroupManager,
    private readonly helperPath: string,
    private readonly dns: EnvironmentDns,
    /** The compiled exec agent (host path), or undefined when disabled or unavailable. */
    private readonly agentPath: string | undefined,
  ) {
    this.dataDir = options.dataDir;
    this.logger = (options.logger ?? silentLogger).child({ component: 'linux-backend' });
    this.images = new ImageStore(
      join(this.dataDir, 'images'),
      {
        mirrors: options.config.mirrors,
        credentials: options.config.credentials,
        insecureRegistries: options.config.insecureRegistries,
      },
      this.logger,
    );
    this.slots = new SlotAllocator(this.dataDir, { logger: this.logger });
    this.builder = options.builder;
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
        logger.warn({ error: errorMessage(error) }, 'exec agent unavailable: containers run without it and execs go through the OCI runtime');
        return undefined;
      });
    }
    const cgroups = options.cgroups ?? (await CgroupManager.detect({}));
    const runtime = options.runtime ?? (await selectOciRuntime({ prefer: options.config.runtime, logger }));
    const dns = await environmentDns({ logger });
    if (dns.warning) logger.warn({ warning: dns.warning }, 'environments get no DNS resolver');
    if (options.firewall !== false) await applyFirewall({ hostDnsAddresses: dns.hostDnsAddresses, logger });
    return new LinuxBackend(options, runtime, cgroups, helperPath, dns, agentPath);
  }

  // ------------------------------------------------------------------ paths and state

  private environmentDir(id: string): string {
    assertEnvironmentId(id);
    return join(this.dataDir, 'environments', id);
  }

  private paths(id: string) {
    const dir = this.environmentDir(id);
    return {
      dir,
      workspace: join(dir, 'workspace'),
      upper: join(dir, 'upper'),
      work: join(dir, 'work'),
      lower: join(dir, 'lower'),
      rootfs: join(dir, 'rootfs'),
      bundle: join(dir, 'bundle'),
      resolvConf: join(dir, 'resolv.conf'),
      hosts: join(dir, 'hosts'),
      hostname: join(dir, 'hostname'),
      logs: join(dir, 'logs'),
      lifecycleLog: join(dir, 'logs', 'lifecycle.log'),
      agent: join(dir, 'agent'),
      agentSocket: join(dir, 'agent', AGENT_SOCKET_NAME),
      state: join(dir, STATE_FILE),
    };
  }

  /** The host-wide slot of a claim in this data dir: the claim plus `config.slotOffset`. */
  private slotInfo(claim: number): SlotInfo {
    return slotInfo(claim + this.options.config.slotOffset);
  }

  private containerId(id: string): string {
    return `${CONTAINER_PREFIX}${id}`;
  }

  private namespacePaths(slot: SlotInfo) {
    return {
      userNamespacePath: join(this.options.userNamespaceDir ?? '/run/warren/userns', slot.netnsName),
      networkNamespacePath: slot.netnsPath,
    };
  }

  private async readState(id: string): Promise<EnvironmentStateFile | undefined> {
    try {
      return JSON.parse(await readFile(this.paths(id).state, 'utf8')) as EnvironmentStateFile;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  private async updateState(id: string, change: (state: EnvironmentStateFile) => void): Promise<EnvironmentStateFile> {
    const state = (await this.readState(id)) ?? { version: 1, environmentId: id, lifecycle: { createDone: false } };
    change(state);
    const file = this.paths(id).state;
    await mkdir(this.paths(id).dir, { recursive: true });
    const temporary = `${file}.tmp-${process.pid}`;
    await writeFile(temporary, JSON.stringify(state, null, 2));
    await rename(temporary, file);
    return state;
  }

  /** `<pid>-<starttime>` of init: unique per container start (proc(5) /proc/pid/stat field 22). */
  private async startIdOf(state: RuntimeState): Promise<string | undefined> {
    if (state.pid <= 0) return undefined;
    try {
      const text = await readFileSync(`/proc/${state.pid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      return `${state.pid}-${fields[19] ?? '0'}`;
    } catch {
      return undefined;
    }
  }

  // ------------------------------------------------------------------ observe

  async observe(environmentId: string): Promise<ObservedEnvironment> {
    const paths = this.paths(environmentId);
    const [dirExists, slot, runtimeState, state] = await Promise.all([
      exists(paths.dir),
      this.slots.lookup(environmentId),
      this.runtime.state(this.containerId(environmentId)),
      this.readState(environmentId),
    ]);
    const contentReady = await exists(join(paths.workspace, '.git'));
    let container: ObservedEnvironment['container'] = { state: 'absent' };
    if (runtimeState) {
      const mapped: ContainerState =
        runtimeState.status === 'creating' ? 'created' : runtimeState.status;
      const startId = mapped === 'running' || mapped === 'paused' ? await this.startIdOf(runtimeState) : undefined;
      container = {
        state: mapped,
        ...(startId ? { startId } : {}),
        ...(startId && state?.container?.startId === startId ? { startedTime: state.container.startedTime } : {}),
      };
    }
    return {
      exists: dirExists || slot !== undefined || runtimeState !== undefined,
      contentReady,
      ...(state?.commit ? { commit: state.commit } : {}),
      ...(state?.resolved ? { resolved: state.resolved.summary } : {}),
      container,
      lifecycle: {
        createDone: state?.lifecycle.createDone ?? false,
        ...(state?.lifecycle.postStartDoneFor ? { postStartDoneFor: state.lifecycle.postStartDoneFor } : {}),
        ...(state?.lifecycle.failure ? { failure: state.lifecycle.failure } : {}),
      },
    };
  }

  async listEnvironments(): Promise<string[]> {
    const fromDirs = await readdir(join(this.dataDir, 'environments')).catch(() => [] as string[]);
    const fromSlots = [...(await this.slots.list()).values()];
    return [...new Set([...fromDirs.filter(isEnvironmentId), ...fromSlots])].sort();
  }

  lifecycleLogPath(environmentId: string): string {
    return this.paths(environmentId).lifecycleLog;
  }

  /** The veth address of the environment's slot and its container's init pid; undefined unless running. */
  async network(environmentId: string): Promise<EnvironmentNetwork | undefined> {
    const [claim, state] = await Promise.all([this.slots.lookup(environmentId), this.runtime.state(this.containerId(environmentId))]);
    if (claim === undefined || state?.status !== 'running' || state.pid <= 0) return undefined;
    return { address: this.slotInfo(claim).environmentAddress, pid: state.pid };
  }

  // ------------------------------------------------------------------ host objects ahead of start

  /** Claims the slot and makes its user + network namespaces and network (all idempotent; start repeats the checks). */
  async prepareHost(environment: Environment, context: StepContext): Promise<void> {
    const slot = this.slotInfo(await this.slots.allocate(environment.metadata.id));
    const freshNamespace = await createEnvironmentNamespaces(this.helperPath, { hostId: slot.uidBase, size: slot.idCount }, this.namespacePaths(slot), {
      logger: context.logger,
    });
    await setupNetwork(slot.slot, { logger: context.logger, freshNamespace });
  }

  // ------------------------------------------------------------------ content

  async prepareContent(environment: Environment, context: StepContext): Promise<{ commit?: string }> {
    const id = environment.metadata.id;
    const paths = this.paths(id);
    await mkdir(paths.dir, { recursive: true, mode: 0o711 });
    const { url, ref } = environment.spec.source.git;
    try {
      const result = await cloneRepository({
        url,
        ...(ref ? { ref } : {}),
        targetDir: paths.workspace,
        allowFileUrls: this.options.allowFileUrls ?? false,
        signal: context.signal,
        logger: context.logger,
        onProgress: (progress) => context.onProgress({ step: 'clone', message: progress.line }),
      });
      await this.updateState(id, (state) => {
        if (result.commit) state.commit = result.commit;
      });
      return result.commit ? { commit: result.commit } : {};
    } catch (error) {
      if (error instanceof GitError && !error.retryable) {
        throw new TerminalEnvironmentError('ContentReady', error.reason, error.message, { cause: error, code: error.code });
      }
      throw error;
    }
  }

  // ------------------------------------------------------------------ devcontainer + image

  async resolve(environment: Environment, context: StepContext): Promise<ResolvedEnvironment> {
    const id = environment.metadata.id;
    const paths = this.paths(id);
    const repositoryName = repositoryBasename(environment.spec.source.git.url);
    const base = { defaultImage: this.options.config.defaultImage, repositoryDir: paths.workspace, repositoryName, environmentId: id };
    let first: ResolvedDevcontainer;
    let parsed;
    try {
      parsed = await loadDevcontainerConfig(paths.workspace, environment.spec.devcontainer.path);
      first = resolveDevcontainer({ ...base, ...(parsed ? { config: parsed } : {}) });
    } catch (error) {
      if (error instanceof InvalidError) {
        throw new TerminalEnvironmentError('DevcontainerSupported', error.reason || INVALID_DEVCONTAINER_CONFIG, error.message, { cause: error });
      }
      throw error;
    }
    let reference: string;
    let image: ImageInfo;
    if (first.build && first.configFile) {
      ({ reference, image } = await this.build(id, first.configFile, context));
    } else {
      reference = first.image ?? this.options.config.defaultImage;
      image = await this.pull(reference, context);
    }
    const devcontainer = resolveDevcontainer({
      ...base,
      ...(parsed ? { config: parsed } : {}),
      image: {
        reference,
        metadataLabel: image.config.labels['devcontainer.metadata'],
        user: image.config.user,
        // `devcontainer build` appends the config itself to the label; do not run its commands twice.
        metadataIncludesConfig: first.build !== undefined,
      },
    });
    const summary: ResolvedEnvironment = {
      ...(devcontainer.configFile ? { configPath: devcontainer.configFile } : {}),
      image: reference,
      imageDigest: image.digest,
      remoteUser: devcontainer.remoteUser,
      containerUser: devcontainer.containerUser,
      workspaceFolder: devcontainer.workspaceFolder,
      ports: devcontainer.forwardPorts.map((port) => {
        const label = devcontainer.portsAttributes[String(port)]?.label;
        return { port, ...(label ? { label } : {}) };
      }),
      unsupported: devcontainer.unsupported.map((entry) => ({ property: entry.property, message: entry.message, source: entry.source })),
    };
    await this.updateState(id, (state) => {
      state.resolved = {
        devcontainer,
        summary,
        image: {
          reference,
          digest: image.digest,
          layers: image.layers,
          env: image.config.env,
          entrypoint: image.config.entrypoint,
          cmd: image.config.cmd,
        },
      };
    });
    for (const warning of devcontainer.warnings) context.logger.info({ warning }, 'devcontainer warning');
    return summary;
  }

  /**
   * The image for `reference`: the stored one when the store has it (no registry round trip on the start
   * path; a tag is then refreshed in the background, at most every {@link TAG_REFRESH_MS}, so the next
   * environment gets a moved tag), otherwise a pull with progress. Registry answers no retry can fix become
   * terminal (ImageReady=False).
   */
  private async pull(reference: string, context: StepContext): Promise<ImageInfo> {
    const stored = await this.images.get(reference).catch(() => undefined);
    if (stored) {
      this.refreshTag(stored);
      return stored;
    }
    context.onProgress({ step: 'image', message: `Pulling ${reference}` });
    try {
      return await this.images.pull(reference, {
        signal: context.signal,
        onProgress: (bytesDone, bytesTotal) => context.onProgress({ step: 'image', message: `Pulling ${reference}`, bytesDone, bytesTotal }),
      });
    } catch (error) {
      if (
        error instanceof ImageNotFoundError ||
        error instanceof InvalidReferenceError ||
        error instanceof RegistryUnauthorizedError ||
        error instanceof NoMatchingPlatformError
      ) {
        throw new TerminalEnvironmentError('ImageReady', error.reason, error.message, { cause: error });
      }
      throw error;
    }
  }

  /**
   * Pulls a stored tag again in the background when it was last resolved more than {@link TAG_REFRESH_MS}
   * ago (errors are logged: the stored image stays in use). Digest references never change.
   */
  private refreshTag(stored: ImageInfo): void {
    const reference = stored.reference;
    const last = Math.max(Date.parse(stored.pulledTime) || 0, this.tagRefreshedAt.get(reference) ?? 0);
    if (Date.now() - last < TAG_REFRESH_MS || reference.includes('@')) return;
    this.tagRefreshedAt.set(reference, Date.now());
    const started = performance.now();
    this.images.pull(reference).then(
      (image) => this.logger.debug({ reference, digest: image.digest, durationMs: Math.round(performance.now() - started) }, 'image tag refreshed'),
      (error: unknown) => this.logger.warn({ reference, error: errorMessage(error) }, 'image tag refresh failed; the stored image stays in use'),
    );
  }

  /**
   * Builds a config with `build` or `features` through the builder backend (the reference CLI on the
   * runner's own Docker engine), appending the build output to the lifecycle log, and imports the image.
   * Build failures, missing base images and an absent Docker engine are terminal (ImageReady=False).
   */
  private async build(id: string, configFile: string, context: StepContext): Promise<{ reference: string; image: ImageInfo }> {
    const paths = this.paths(id);
    await mkdir(paths.logs, { recursive: true });
    context.onProgress({ step: 'build', message: `Building the image of ${configFile}` });
    await appendFile(paths.lifecycleLog, `\n=== image build of ${configFile} ===\n`);
    const log = await openFile(paths.lifecycleLog, 'a');
    try {
      this.builder ??= new DevcontainerBuilder({ engine: new DockerEngine({ dataDir: this.dataDir, logger: this.logger }), logger: this.logger });
      const result = await this.builder.build({
        workspaceDir: paths.workspace,
        configPath: configFile,
        registryMirrors: this.options.config.mirrors,
        signal: context.signal,
        onLog: (line) => {
          void log.write(`${line}\n`).catch(() => {});
          context.onProgress({ step: 'build', message: line.slice(0, 200) });
        },
      });
      const image = await this.images.importDockerArchive(result.dockerArchivePath, result.imageName);
      return { reference: result.imageName, image };
    } catch (error) {
      if (error instanceof InvalidError) throw new TerminalEnvironmentError('DevcontainerSupported', error.reason, error.message, { cause: error });
      if (error instanceof DevcontainerBuildError || error instanceof BaseImageNotFoundError || error instanceof DockerNotInstalledError) {
        throw new TerminalEnvironmentError('ImageReady', error.reason, error.message, { cause: error });
      }
      throw error;
    } finally {
      await log.close();
    }
  }

  // ------------------------------------------------------------------ start

  private async limits(environment: Environment, logger: Logger): Promise<CgroupLimits> {
    if (!this.options.environmentClass) return {};
    const spec = await this.options.environmentClass(environment.spec.className);
    if (!spec) {
      logger.warn({ className: environment.spec.className }, 'environment class not found; no resource limits');
      return {};
    }
    return {
      cpuMillicores: spec.cpuMillicores,
      memoryBytes: spec.memoryBytes,
      ...(spec.swapBytes ? { swapBytes: spec.swapBytes } : { swapBytes: 0 }),
      pids: spec.pids,
    };
  }

  async start(environment: Environment, context: StepContext): Promise<void> {
    const id = environment.metadata.id;
    const paths = this.paths(id);
    const containerId = this.containerId(id);
    const current = await this.runtime.state(containerId);
    if (current?.status === 'running') return;
    if (current?.status === 'paused') {
      await this.runtime.resume(containerId);
      return;
    }
    // A created or stopped container (crash mid-start, or the process exited): remove it and start anew.
    if (current) await this.runtime.delete(containerId, { force: true });

    const state = await this.readState(id);
    if (!state?.resolved) throw new WarrenError('NotResolved', 500, `environment ${id} has no resolved configuration yet`);
    const { devcontainer, image } = state.resolved;
    // Debug timing of each start step (`start step finished {step, durationMs}`), to see where a start goes.
    let stepStarted = performance.now();
    const stepDone = (step: string) => {
      const now = performance.now();
      context.logger.debug({ step, durationMs: Math.round(now - stepStarted) }, 'start step finished');
      stepStarted = now;
    };
    const slot = this.slotInfo(await this.slots.allocate(id));
    const idMapping = { hostId: slot.uidBase, size: slot.idCount };

    // The namespaces come first (the network lives in the pinned netns); then the network and the root
    // filesystem are independent of each other and are made at the same time.
    const namespaces = this.namespacePaths(slot);
    const freshNamespace = await createEnvironmentNamespaces(this.helperPath, idMapping, namespaces, { logger: context.logger });
    stepDone('namespaces');
    const network = setupNetwork(slot.slot, { logger: context.logger, freshNamespace }).then(() => stepDone('network'));
    const filesystem = (async () => {
      await mountRootfs(
        { lowerDirs: image.layers, lowerMountDir: paths.lower, upperDir: paths.upper, workDir: paths.work, target: paths.rootfs, idMapping },
        this.helperPath,
        { logger: context.logger },
      );
      stepDone('rootfs');
      const { users, cache } = await this.usersOf(paths.rootfs, [devcontainer.containerUser, devcontainer.remoteUser], state.users);
      const containerUser = users[devcontainer.containerUser]!;
      const remoteUser = users[devcontainer.remoteUser]!;
      // The workspace belongs to the remote user (as with the reference CLI's updateRemoteUserUID): its
      // host owner is that uid shifted into the environment's range.
      const owner = `${slot.uidBase + remoteUser.uid}:${slot.gidBase + remoteUser.gid}`;
      if (state.workspaceOwner !== owner) {
        await exec(['chown', '-R', '--no-dereference', owner, paths.workspace], { logger: context.logger });
        await this.updateState(id, (next) => void (next.workspaceOwner = owner));
      }
      stepDone('users');
      return { containerUser, cache };
    })();
    const hostname = environment.metadata.name.slice(0, 63);
    const files = Promise.all([
      writeFile(paths.resolvConf, this.dns.resolvConf),
      writeFile(paths.hosts, `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${slot.environmentAddress}\t${hostname}\n`),
      writeFile(paths.hostname, `${hostname}\n`),
      mkdir(paths.logs, { recursive: true }),
      this.prepareAgentDir(paths, slot),
    ]);
    const limitsLookup = this.limits(environment, context.logger);
    // Every branch settles before anything is thrown, so no step of this start outlives it.
    const settled = await Promise.allSettled([network, filesystem, files, limitsLookup]);
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
    const { containerUser, cache: users } = await filesystem;
    const limits = await limitsLookup;
    stepDone('files');

    const command = devcontainer.overrideCommand ? [] : [...image.entrypoint, ...image.cmd];
    if (!devcontainer.overrideCommand && command.length === 0) {
      throw new TerminalEnvironmentError('Running', 'NoCommand', `image ${image.reference} has no entrypoint or command and overrideCommand is false`);
    }
    const agent = this.agentPath;
    const env = mergeEnv(image.env, devcontainer.containerEnv);
    // With the agent, the container process is its init, as root (it switches users per exec); the image
    // command runs under it as containerUser. HOME is then set here, since the runtime would take root's.
    if (agent && !env.some((entry) => entry.startsWith('HOME='))) env.push(`HOME=${containerUser.home}`);
    const config = buildOciConfig({
      rootfsPath: paths.rootfs,
      hostname,
      process: agent
        ? { args: initArgs(command, devcontainer.overrideCommand ? undefined : containerUser), env, cwd: devcontainer.workspaceFolder, uid: 0, gid: 0 }
        : {
            args: devcontainer.overrideCommand ? KEEP_ALIVE_COMMAND : command,
            env,
            cwd: devcontainer.workspaceFolder,
            uid: containerUser.uid,
            gid: containerUser.gid,
            additionalGids: containerUser.additionalGids,
          },
      idMapping,
      ...namespaces,
      cgroupsPath: this.cgroups.cgroupsPath(id),
      resources: ociLinuxResources(limits) as Record<string, unknown>,
      mounts: [
        { source: paths.workspace, destination: devcontainer.workspaceFolder },
        { source: paths.resolvConf, destination: '/etc/resolv.conf', readonly: true },
        { source: paths.hosts, destination: '/etc/hosts', readonly: true },
        { source: paths.hostname, destination: '/etc/hostname', readonly: true },
        // The agent's directory on runc's /dev tmpfs (no mountpoint lands in the overlay upper dir), and in it
        // the shared init binary, read-only (and owned by host root, which the user namespace does not map).
        ...(agent
          ? [
              { source: paths.agent, destination: AGENT_DIR_IN_CONTAINER, options: ['nosuid', 'nodev', 'noexec'] },
              { source: agent, destination: INIT_PATH_IN_CONTAINER, readonly: true, options: ['nosuid', 'nodev'] },
            ]
          : []),
      ],
    });
    await mkdir(paths.bundle, { recursive: true });
    await writeFile(join(paths.bundle, 'config.json'), JSON.stringify(config, null, 2));
    stepDone('config');
    const startedTime = new Date().toISOString();
    await this.runtime.run(paths.bundle, containerId);
    stepDone('runtime-run');
    if (agent) await this.waitForAgent(paths.agentSocket, context.logger);
    stepDone('agent');
    const started = await this.runtime.state(containerId);
    const startId = started ? await this.startIdOf(started) : undefined;
    await this.updateState(id, (next) => {
      if (startId) next.container = { startId, startedTime };
      next.users = users;
    });
    stepDone('state');
    context.logger.info({ containerId, slot: slot.slot }, 'container started');
  }

  /** {@link resolveUsersCached}; an unknown user is terminal (`Running=False`, `UnknownContainerUser`). */
  private async usersOf(rootfs: string, specs: string[], cache: UserCache | undefined): Promise<{ users: Record<string, ContainerUser>; cache: UserCache }> {
    try {
      return await resolveUsersCached(rootfs, specs, cache);
    } catch (error) {
      if (error instanceof InvalidError) throw new TerminalEnvironmentError('Running', error.reason, error.message, { cause: error });
      throw error;
    }
  }

  /**
   * Makes the agent directory for a start: owned by the container's root (host uid/gid = the slot's base), mode
   * 0700, so only root inside the container (and host root) can reach the socket; a stale socket from the last
   * start is removed, so {@link waitForAgent} sees the new agent's.
   */
  private async prepareAgentDir(paths: ReturnType<LinuxBackend['paths']>, slot: SlotInfo): Promise<void> {
    await rm(paths.agentSocket, { force: true });
    if (!this.agentPath) return;
    await mkdir(paths.agent, { recursive: true, mode: 0o700 });
    await chown(paths.agent, slot.uidBase, slot.gidBase);
    await chmod(paths.agent, 0o700);
  }

  /**
   * Waits until the agent's socket exists (the init binds it before it starts the image command, and makes it
   * appear listening, by rename(2)), up to 2 s; a miss is logged and execs use the OCI runtime meanwhile.
   */
  private async waitForAgent(socketPath: string, logger: Logger): Promise<void> {
    const deadline = performance.now() + 2_000;
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      if (await exists(socketPath)) return;
      if (performance.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    logger.warn({ socketPath }, 'exec agent socket did not appear; execs use the OCI runtime');
  }

  // ------------------------------------------------------------------ exec and lifecycle

  /**
   * Starts `request` in the running environment. Without a terminal it goes through the container's exec agent
   * when its socket accepts (no OCI runtime process and no runtime state lookup: a live agent proves the
   * container runs); otherwise (a container from before the agent, a stopped one, a terminal) through the
   * OCI runtime's exec after checking the container runs. The user comes from the users cached at start while
   * /etc/passwd and /etc/group are unchanged, else from those files.
   * @throws {EnvironmentNotRunningError} when the container is not running.
   * @throws {InvalidError} reason `UnknownContainerUser` for a user name the image does not have.
   */
  async exec(environmentId: string, request: ExecRequest, logger: Logger): Promise<ExecSession> {
    const containerId = this.containerId(environmentId);
    const paths = this.paths(environmentId);
    const state = await this.readState(environmentId);
    if (!state?.resolved) throw new EnvironmentNotRunningError(environmentId);
    const { devcontainer, image } = state.resolved;
    const spec = request.user ?? devcontainer.remoteUser;
    const optionsFor = (user: ContainerUser) => ({
      args: request.argv,
      env: this.execEnv(devcontainer, image.env, user, [...(request.tty ? ['TERM=xterm-256color'] : []), ...(request.env ?? [])]),
      cwd: request.cwd ?? devcontainer.workspaceFolder,
      uid: user.uid,
      gid: user.gid,
      additionalGids: user.additionalGids,
    });
    const viaAgent = async (user: ContainerUser): Promise<ExecSession | undefined> => {
      const options = optionsFor(user);
      try {
        const session = await execViaAgent(
          paths.agentSocket,
          { uid: options.uid, gid: options.gid, additionalGids: options.additionalGids, cwd: options.cwd, argv: options.args, env: options.env },
          { logger },
        );
        logger.debug({ environmentId, user: user.name, via: 'agent' }, 'exec started');
        return session;
      } catch (error) {
        if (!(error instanceof ExecAgentUnavailableError)) throw error;
        logger.debug({ environmentId, errno: error.errno }, 'exec agent unavailable; using the OCI runtime');
        return undefined;
      }
    };

    // A cached user is valid only while the rootfs's user files are unchanged; a stopped environment has no
    // mounted rootfs, so its signature differs and the runtime check below answers first.
    const cached = await cachedUser(paths.rootfs, spec, state.users);
    if (cached && !request.tty) {
      const session = await viaAgent(cached);
      if (session) return session;
    }
    const runtimeState = await this.runtime.state(containerId);
    if (runtimeState?.status !== 'running') throw new EnvironmentNotRunningError(environmentId);
    const user = cached ?? (await resolveUsersCached(paths.rootfs, [spec], state.users)).users[spec]!;
    if (!cached && !request.tty) {
      const session = await viaAgent(user);
      if (session) return session;
    }
    const options = optionsFor(user);
    logger.debug({ environmentId, user: user.name, tty: request.tty, via: 'runtime' }, 'exec starting');
    if (!request.tty) return sessionOf(await this.runtime.exec(containerId, options));
    // `runc exec --tty` needs a terminal on its stdin: a resizable node-pty pty when its addon loads.
    const pty = await loadNodePty(logger);
    if (pty) {
      const prepared = await this.runtime.execCommand(containerId, { ...options, tty: true });
      const size = request.cols && request.rows ? { cols: request.cols, rows: request.rows } : {};
      const session = spawnUnderPty(pty, prepared.argv, { ...size, logger });
      void session.exit.finally(() => prepared.dispose().catch(() => {}));
      return session;
    }
    // Without a pty library, util-linux script(1) gives it
    // one: it runs the command on a new pty and relays our pipes to it. The window size is set once with
    // stty(1) before runc starts (runc copies it to the container's console); later resizes are not
    // propagated (a known limitation until the runner uses a pty library).
    const prepared = await this.runtime.execCommand(containerId, { ...options, tty: true });
    const size = request.cols && request.rows ? `stty cols ${request.cols} rows ${request.rows} 2>/dev/null; ` : '';
    const command = `${size}exec ${prepared.argv.map(shellQuote).join(' ')}`;
    const child = spawnLogged(['script', '--quiet', '--return', '--command', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], logger });
    child.once('close', () => void prepared.dispose().catch(() => {}));
    const session = sessionOf(child);
    // A terminal has one output stream; script's own stderr only carries its errors.
    child.stderr?.on('data', (chunk: Buffer) => logger.warn({ stderr: chunk.toString('utf8').slice(0, 500) }, 'terminal relay error output'));
    const { stderr: _ignored, ...withoutStderr } = session;
    return withoutStderr;
  }

  /**
   * Environment of tool processes: image Env, then containerEnv, then remoteEnv (with `${containerEnv:X}`
   * substituted; `null` unsets), then the request's entries; HOME and USER of the user unless set.
   */
  private execEnv(devcontainer: ResolvedDevcontainer, imageEnv: string[], user: ContainerUser, extra: string[]): string[] {
    const base = envMap(mergeEnv(imageEnv, devcontainer.containerEnv));
    const variables = new Map<string, string>([['HOME', user.home], ['USER', user.name], ...base]);
    if (!variables.has('PATH')) variables.set('PATH', DEFAULT_PATH);
    if (base.has('HOME') && user.uid !== 0 && base.get('HOME') === '/root') variables.set('HOME', user.home);
    const remote = resolveRemoteEnv(devcontainer.remoteEnv, Object.fromEntries(variables));
    for (const [name, value] of Object.entries(remote)) {
      if (value === null) variables.delete(name);
      else variables.set(name, value);
    }
    for (const [name, value] of envMap(extra)) variables.set(name, value);
    return [...variables].map(([name, value]) => `${name}=${value}`);
  }

  async runLifecycle(environment: Environment, stage: 'create' | 'start', context: StepContext): Promise<LifecycleOutcome> {
    const id = environment.metadata.id;
    const state = await this.readState(id);
    if (!state?.resolved) throw new WarrenError('NotResolved', 500, `environment ${id} has no resolved configuration yet`);
    const { lifecycle } = state.resolved.devcontainer;
    const hooks: Array<[string, LifecycleStep[]]> =
      stage === 'create'
        ? [['onCreateCommand', lifecycle.onCreate], ['updateContentCommand', lifecycle.updateContent], ['postCreateCommand', lifecycle.postCreate]]
        : [['postStartCommand', lifecycle.postStart]];
    const runtimeState = await this.runtime.state(this.containerId(id));
    const startId = runtimeState ? await this.startIdOf(runtimeState) : undefined;
    if (stage === 'start' && !startId) throw new EnvironmentNotRunningError(id);

    let outcome: LifecycleOutcome = { succeeded: true };
    // Like the reference CLI, the first failing hook stops the hooks after it.
    hooks: for (const [hook, steps] of hooks) {
      for (const step of steps) {
        context.onProgress({ step: 'lifecycle', message: `Running ${hook}` });
        const results = await Promise.all(step.commands.map((command) => this.runLifecycleCommand(id, hook, step, command, context)));
        const failed = results.find((result) => result.code !== 0);
        if (failed) {
          outcome = { succeeded: false, message: `${hook}${failed.name ? ` "${failed.name}"` : ''} exited with code ${failed.code}` };
          break hooks;
        }
      }
    }
    // Lifecycle commands may add users or groups (useradd, usermod -aG): keep the cache current for the execs after.
    const { containerUser, remoteUser } = state.resolved.devcontainer;
    const users = await resolveUsersCached(this.paths(id).rootfs, [containerUser, remoteUser], state.users).catch(() => undefined);
    await this.updateState(id, (next) => {
      if (users) next.users = users.cache;
      if (stage === 'create') next.lifecycle.createDone = true;
      else if (startId) next.lifecycle.postStartDoneFor = startId;
      if (!outcome.succeeded) next.lifecycle.failure = outcome.message;
      else if (stage === 'create') delete next.lifecycle.failure;
    });
    return outcome;
  }

  /** Runs one lifecycle command as remoteUser in the workspace folder, appending its output to the log. */
  private async runLifecycleCommand(
    id: string,
    hook: string,
    step: LifecycleStep,
    command: LifecycleCommand,
    context: StepContext,
  ): Promise<{ code: number; name?: string }> {
    const paths = this.paths(id);
    await mkdir(paths.logs, { recursive: true });
    const argv = command.kind === 'shell' ? ['/bin/sh', '-c', command.shell] : command.argv;
    const label = `${hook}${command.name ? ` "${command.name}"` : ''} from ${step.source}`;
    await appendFile(paths.lifecycleLog, `\n=== ${label}: ${command.kind === 'shell' ? command.shell : JSON.stringify(command.argv)} ===\n`);
    const log = await openFile(paths.lifecycleLog, 'a');
    let code: number;
    try {
      const session = await this.exec(id, { argv, tty: false }, context.logger);
      session.stdin.end();
      const write = (chunk: Buffer) => void log.write(chunk).catch(() => {});
      session.stdout.on('data', write);
      session.stderr?.on('data', write);
      const onAbort = () => session.kill();
      context.signal.addEventListener('abort', onAbort, { once: true });
      try {
        code = await session.exit;
      } finally {
        context.signal.removeEventListener('abort', onAbort);
      }
      context.signal.throwIfAborted();
    } finally {
      await log.close();
    }
    await appendFile(paths.lifecycleLog, `=== ${label} exited with code ${code} ===\n`);
    context.logger.info({ hook, name: command.name, code }, 'lifecycle command finished');
    return { code, ...(command.name ? { name: command.name } : {}) };
  }

  // ------------------------------------------------------------------ stop and remove

  /**
   * Stops the container and releases its cgroup and every mount. The slot claim (uid range, subnet) and the
   * slot's pinned user + network namespaces with their veth pair stay: they hold no process and no disk
   * state, and the next start reuses them instead of making them again (about a third of a start's kernel
   * work). {@link remove} releases them.
   */
  async stop(environmentId: string, graceSeconds: number, context: StepContext): Promise<void> {
    await stopContainer(this.runtime, this.containerId(environmentId), graceSeconds, { signal: context.signal });
    await this.releaseKernelObjects(environmentId, context.logger, { keepNetwork: true });
  }

  private async releaseKernelObjects(environmentId: string, logger: Logger, options: { keepNetwork?: boolean } = {}): Promise<void> {
    const paths = this.paths(environmentId);
    await this.cgroups.remove(environmentId).catch((error: unknown) => logger.warn({ error: errorMessage(error) }, 'cgroup removal failed'));
    const slot = options.keepNetwork ? undefined : await this.slots.lookup(environmentId);
    if (slot !== undefined) {
      const info = this.slotInfo(slot);
      await teardownNetwork(info.slot, { logger });
      await deleteEnvironmentNamespaces(this.namespacePaths(info), { logger });
    }
    await unmountRootfs({ lowerMountDir: paths.lower, target: paths.rootfs }, { detach: true, logger });
    await unmountRecursive(paths.dir, { detach: true, logger });
  }

  async remove(environmentId: string, context: StepContext): Promise<void> {
    await stopContainer(this.runtime, this.containerId(environmentId), 0, { signal: context.signal });
    await this.releaseKernelObjects(environmentId, context.logger);
    // Nothing may be mounted below the directory before it is deleted (rm would cross into mounts).
    const stillMounted = (await readMountInfo()).some((entry) => entry.mountPoint.startsWith(`${this.paths(environmentId).dir}/`));
    if (stillMounted) throw new WarrenError('MountBusy', 500, `mounts remain below ${this.paths(environmentId).dir}`);
    await rm(this.paths(environmentId).dir, { recursive: true, force: true });
    const slot = await this.slots.lookup(environmentId);
    if (slot !== undefined) await this.slots.release(slot);
    context.logger.info({ environmentId }, 'environment removed from host');
  }

  async cleanupOrphans(knownIds: ReadonlySet<string>, context: StepContext): Promise<string[]> {
    const removed: string[] = [];
    const logger = context.logger;
    // Whole environments this runner has state for.
    for (const id of await this.listEnvironments()) {
      if (knownIds.has(id)) continue;
      await this.remove(id, context);
      removed.push(id);
    }
    // Containers under our state root whose environment is unknown.
    for (const containerId of await this.runtime.list()) {
      if (!containerId.startsWith(CONTAINER_PREFIX)) continue;
      const id = containerId.slice(CONTAINER_PREFIX.length);
      if (knownIds.has(id)) continue;
      await this.runtime.delete(containerId, { force: true });
      removed.push(containerId);
    }
    // cgroups named after unknown environments.
    for (const name of await this.cgroups.list()) {
      if (knownIds.has(name) || !isEnvironmentId(name)) continue;
      await this.cgroups.remove(name).then(
        () => removed.push(`cgroup:${name}`),
        (error: unknown) => logger.warn({ name, error: errorMessage(error) }, 'orphaned cgroup not removed'),
      );
    }
    // Network namespaces and links of slots no environment of this data dir holds (opt-in, see options).
    if (!this.options.sweepUnclaimedNetworks) return removed;
    const claimed = new Set<number>([...(await this.slots.list()).keys()].map((slot) => this.slotInfo(slot).slot));
    const objects = await listNetworkObjects({ logger });
    const slotsSeen = new Set<number>();
    for (const name of [...objects.netns, ...objects.links]) {
      const match = /^warren-?(\d+)[hc]?$/.exec(name);
      if (match) slotsSeen.add(Number(match[1]));
    }
    for (const slot of slotsSeen) {
      if (claimed.has(slot)) continue;
      await teardownNetwork(slot, { logger });
      await deleteEnvironmentNamespaces(this.namespacePaths(slotInfo(slot)), { logger });
      removed.push(`network:${slot}`);
    }
    return removed;
  }
}

// ------------------------------------------------------------------ helpers

const ENVIRONMENT_ID = /^[a-z0-9][a-z0-9._-]{0,127}$/;

function isEnvironmentId(id: string): boolean {
  return ENVIRONMENT_ID.test(id);
}

/** Environment ids become path components and container ids; reject anything else. */
function assertEnvironmentId(id: string): void {
  if (!isEnvironmentId(id)) throw new InvalidError(`invalid environment id "${id}"`, [{ field: 'metadata.id', message: 'not a valid id' }]);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function envMap(entries: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of entries) {
    const separator = entry.indexOf('=');
    if (separator > 0) map.set(entry.slice(0, separator), entry.slice(separator + 1));
  }
  return map;
}

/** Image `Env` entries with `containerEnv` applied on top (per variable last wins). */
function mergeEnv(imageEnv: readonly string[], containerEnv: Readonly<Record<string, string>>): string[] {
  const map = envMap(imageEnv);
  if (!map.has('PATH')) map.set('PATH', DEFAULT_PATH);
  for (const [name, value] of Object.entries(containerEnv)) map.set(name, value);
  return [...map].map(([name, value]) => `${name}=${value}`);
}

/** Wraps a `runc exec` child as an ExecSession; the exit code is the process's (128 + n for signal n). */
function sessionOf(child: ChildProcess): ExecSession {
  const exit = new Promise<number>((resolve) => {
    child.once('error', () => resolve(255));
    child.once('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)));
  });
  return {
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exit,
    kill: () => {
      // runc forwards SIGTERM to the process; SIGKILL would only kill runc and orphan the process.
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }, 2_000).unref();
      }
    },
  };
}

/** Quotes `text` for /bin/sh (POSIX single quotes). */
function shellQuote(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return (signal && numbers[signal]) ?? 0;
}
