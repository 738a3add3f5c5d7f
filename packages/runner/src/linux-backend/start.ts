// Starting an environment's container: slot, user + network namespaces and network, the idmapped overlay root
// filesystem, the users, the bind-mounted files, cgroup limits, the OCI config and the runtime's `run`.
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Environment, classRequests } from '@warren/api';
import { type Logger, WarrenError } from '@warren/base';
import { type StepContext, TerminalEnvironmentError } from '../environment/index.js';
import {
  AGENT_DIR_IN_CONTAINER,
  type CgroupLimits,
  INIT_PATH_IN_CONTAINER,
  type SlotInfo,
  buildOciConfig,
  createEnvironmentNamespaces,
  environmentCpus,
  exec,
  initArgs,
  mountRootfs,
  ociLinuxResources,
  readHostCpus,
  setupNetwork,
  unmountRootfs,
} from '../linux/index.js';
import { classifyStepError } from './classify-error.js';
import type { BackendContext } from './context.js';
import { locateEnvironment, prepareDiskForStart } from './disk.js';
import { mergeEnv } from './environment-variables.js';
import { environmentIoLimits } from './io-limits.js';
import { type EnvironmentPaths, containerId as containerIdOf, exists, hostSlot, namespacePaths } from './paths.js';
import { readState, startIdOf, updateState } from './state-file.js';
import { type ContainerUser, type UserCache, resolveUsersCached } from './users.js';

/**
 * The keep-alive process of `overrideCommand: true` when the exec agent is unavailable (no static libc to
 * build it): a PID-1-safe loop that exits 0 on SIGTERM. With the agent, its init plays this part.
 */
export const KEEP_ALIVE_COMMAND = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1000 & wait $!; done'];

/** Claims the slot and makes its user + network namespaces and network (all idempotent; start repeats the checks). */
export async function prepareHost(backend: BackendContext, environment: Environment, context: StepContext): Promise<void> {
  const slot = hostSlot(backend, await backend.slots.allocate(environment.metadata.id));
  const freshNamespace = await createEnvironmentNamespaces(
    backend.helperPath,
    { hostId: slot.uidBase, size: slot.idCount },
    namespacePaths(backend, slot),
    {
      logger: context.logger,
    },
  );
  await setupNetwork(slot.slot, { logger: context.logger, freshNamespace });
}

/**
 * The cgroup limits of the environment's class; none without a class lookup or for an unknown class. IO limits go
 * on the devices holding `workspace` and the data directory (io-limits.ts).
 */
async function limitsOf(backend: BackendContext, environment: Environment, workspace: string, logger: Logger): Promise<CgroupLimits> {
  if (!backend.options.environmentClass) return {};
  const spec = await backend.options.environmentClass(environment.spec.className);
  if (!spec) {
    logger.warn({ className: environment.spec.className }, 'environment class not found; no resource limits');
    return {};
  }
  const requests = classRequests(spec);
  return {
    cpuMillicores: spec.cpuMillicores,
    memoryBytes: spec.memoryBytes,
    cpuRequestMillicores: requests.cpuMillicores,
    memoryRequestBytes: requests.memoryBytes,
    ...(spec.swapBytes ? { swapBytes: spec.swapBytes } : { swapBytes: 0 }),
    pids: spec.pids,
    io: await environmentIoLimits(backend, spec.io, workspace, logger),
  };
}

/**
 * {@link EnvironmentBackend.start}: a running container is left alone, a paused one resumed, any other removed
 * and started anew.
 * @throws {WarrenError} `NotResolved` before resolve; {@link TerminalEnvironmentError} (Running) for an image
 *   without a command or an unknown user; other errors as thrown (retried).
 */
export async function startEnvironment(backend: BackendContext, environment: Environment, context: StepContext): Promise<void> {
  const { runtime, dataDir } = backend;
  const id = environment.metadata.id;
  // With a disk quota, the workspace and the overlay upper and work dirs are on the environment's disk (0011).
  const paths = await locateEnvironment(backend, id);
  const containerId = containerIdOf(id);
  const current = await runtime.state(containerId);
  if (current?.status === 'running') return;
  if (current?.status === 'paused') {
    await runtime.resume(containerId);
    return;
  }
  // A created or stopped container (crash mid-start, or the process exited): remove it and start anew.
  if (current) await runtime.delete(containerId, { force: true });

  const state = await readState(dataDir, id);
  if (!state?.resolved) throw new WarrenError('NotResolved', 500, `environment ${id} has no resolved configuration yet`);
  const { devcontainer, image } = state.resolved;
  // Debug timing of each start step (`start step finished {step, durationMs}`), to see where a start goes.
  let stepStarted = performance.now();
  const stepDone = (step: string) => {
    const now = performance.now();
    context.logger.debug({ step, durationMs: Math.round(now - stepStarted) }, 'start step finished');
    stepStarted = now;
  };
  const slot = hostSlot(backend, await backend.slots.allocate(id));
  const idMapping = { hostId: slot.uidBase, size: slot.idCount };

  // The namespaces come first (the network lives in the pinned netns); then the network and the root
  // filesystem are independent of each other and are made at the same time.
  const namespaces = namespacePaths(backend, slot);
  const freshNamespace = await createEnvironmentNamespaces(backend.helperPath, idMapping, namespaces, { logger: context.logger });
  stepDone('namespaces');
  const network = setupNetwork(slot.slot, { logger: context.logger, freshNamespace }).then(() => stepDone('network'));
  const filesystem = (async () => {
    // The disk is grown to a larger quota here (the overlay on it is unmounted first) and mounted if it is not.
    const unmountOverlay = () => unmountRootfs({ lowerMountDir: paths.lower, target: paths.rootfs }, { logger: context.logger });
    await prepareDiskForStart(backend, environment, unmountOverlay, context.logger);
    await mountRootfs(
      { lowerDirs: image.layers, lowerMountDir: paths.lower, upperDir: paths.upper, workDir: paths.work, target: paths.rootfs, idMapping },
      backend.helperPath,
      { logger: context.logger },
    );
    stepDone('rootfs');
    const { users, cache } = await usersOf(paths.rootfs, [devcontainer.containerUser, devcontainer.remoteUser], state.users);
    const containerUser = users[devcontainer.containerUser]!;
    const remoteUser = users[devcontainer.remoteUser]!;
    // The workspace belongs to the remote user (as with the reference CLI's updateRemoteUserUID): its
    // host owner is that uid shifted into the environment's range.
    const owner = `${slot.uidBase + remoteUser.uid}:${slot.gidBase + remoteUser.gid}`;
    if (state.workspaceOwner !== owner) {
      await exec(['chown', '-R', '--no-dereference', owner, paths.workspace], { logger: context.logger });
      await updateState(dataDir, id, (next) => void (next.workspaceOwner = owner));
    }
    stepDone('users');
    return { containerUser, cache };
  })();
  const hostname = environment.metadata.name.slice(0, 63);
  const files = Promise.all([
    writeFile(paths.resolvConf, backend.dns.resolvConf),
    writeFile(paths.hosts, `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${slot.environmentAddress}\t${hostname}\n`),
    writeFile(paths.hostname, `${hostname}\n`),
    mkdir(paths.logs, { recursive: true }),
    prepareAgentDir(backend, paths, slot),
  ]);
  const limitsLookup = limitsOf(backend, environment, paths.workspace, context.logger);
  // Every branch settles before anything is thrown, so no step of this start outlives it.
  const settled = await Promise.allSettled([network, filesystem, files, limitsLookup]);
  for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
  const { containerUser, cache: users } = await filesystem;
  const limits = await limitsLookup;
  stepDone('files');

  const command = devcontainer.overrideCommand ? [] : [...image.entrypoint, ...image.cmd];
  if (!devcontainer.overrideCommand && command.length === 0) {
    throw new TerminalEnvironmentError(
      'Running',
      'NoCommand',
      `image ${image.reference} has no entrypoint or command and overrideCommand is false`,
    );
  }
  const agent = backend.agentPath;
  const env = mergeEnv(image.env, devcontainer.containerEnv);
  // With the agent, the container process is its init, as root (it switches users per exec); the image
  // command runs under it as containerUser. HOME is then set here, since the runtime would take root's.
  if (agent && !env.some((entry) => entry.startsWith('HOME='))) env.push(`HOME=${containerUser.home}`);
  const config = buildOciConfig({
    rootfsPath: paths.rootfs,
    hostname,
    process: agent
      ? {
          args: initArgs(command, devcontainer.overrideCommand ? undefined : containerUser),
          env,
          cwd: devcontainer.workspaceFolder,
          uid: 0,
          gid: 0,
        }
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
    cgroupsPath: backend.cgroups.cgroupsPath(id),
    resources: withCpuset(
      ociLinuxResources(limits) as Record<string, unknown>,
      environmentCpus(limits.cpuMillicores, slot.slot, await readHostCpus()),
    ),
    ...(backend.options.procViews ? { procViews: backend.options.procViews } : {}),
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
  await runtime.run(paths.bundle, containerId);
  stepDone('runtime-run');
  if (agent) await waitForAgent(paths.agentSocket, context.logger);
  stepDone('agent');
  const started = await runtime.state(containerId);
  const startId = started ? await startIdOf(started) : undefined;
  await updateState(dataDir, id, (next) => {
    if (startId) next.container = { startId, startedTime };
    next.users = users;
  });
  stepDone('state');
  context.logger.info({ containerId, slot: slot.slot }, 'container started');
}

/**
 * `resources` with `cpu.cpus` set to `cpus` (linux/cpuset.ts: ceil(limit / 1000) CPUs, so `nproc` and lxcfs's
 * /proc/cpuinfo tell the limit; docs/design/0013-honest-proc-views.md); unchanged when `cpus` is undefined.
 */
function withCpuset(resources: Record<string, unknown>, cpus: string | undefined): Record<string, unknown> {
  if (cpus === undefined) return resources;
  return { ...resources, cpu: { ...(resources.cpu as Record<string, unknown> | undefined), cpus } };
}

/** {@link resolveUsersCached}; an unknown user is terminal (`Running=False`, `UnknownContainerUser`). */
async function usersOf(
  rootfs: string,
  specs: string[],
  cache: UserCache | undefined,
): Promise<{ users: Record<string, ContainerUser>; cache: UserCache }> {
  try {
    return await resolveUsersCached(rootfs, specs, cache);
  } catch (error) {
    throw classifyStepError('users', error) ?? error;
  }
}

/**
 * Makes the agent directory for a start: owned by the container's root (host uid/gid = the slot's base), mode
 * 0700, so only root inside the container (and host root) can reach the socket; a stale socket from the last
 * start is removed, so {@link waitForAgent} sees the new agent's.
 */
async function prepareAgentDir(backend: BackendContext, paths: EnvironmentPaths, slot: SlotInfo): Promise<void> {
  await rm(paths.agentSocket, { force: true });
  if (!backend.agentPath) return;
  await mkdir(paths.agent, { recursive: true, mode: 0o700 });
  await chown(paths.agent, slot.uidBase, slot.gidBase);
  await chmod(paths.agent, 0o700);
}

/**
 * Waits until the agent's socket exists (the init binds it before it starts the image command, and makes it
 * appear listening, by rename(2)), up to 2 s; a miss is logged and execs use the OCI runtime meanwhile.
 */
async function waitForAgent(socketPath: string, logger: Logger): Promise<void> {
  const deadline = performance.now() + 2_000;
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    if (await exists(socketPath)) return;
    if (performance.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  logger.warn({ socketPath }, 'exec agent socket did not appear; execs use the OCI runtime');
}
