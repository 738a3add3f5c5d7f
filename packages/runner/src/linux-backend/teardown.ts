// Taking environments down: stop (container, cgroup, mounts), remove (everything, slot included) and the sweep
// of host objects whose environment this runner no longer knows.
import { rm } from 'node:fs/promises';
import { type Logger, WarrenError, errorMessage } from '@warren/base';
import type { StepContext } from '../environment/index.js';
import {
  BACKGROUND_CGROUP,
  deleteEnvironmentNamespaces,
  listNetworkObjects,
  readMountInfo,
  slotInfo,
  stopContainer,
  teardownNetwork,
  unmountRecursive,
  unmountRootfs,
} from '../linux/index.js';
import type { BackendContext } from './context.js';
import { releaseDisk, sweepOrphanLoopDevices } from './disk.js';
import { listEnvironments } from './observe.js';
import { CONTAINER_PREFIX, containerId, environmentPaths, hostSlot, isEnvironmentId, namespacePaths } from './paths.js';

/**
 * Stops the container and releases its cgroup and every mount but its disk's. The slot claim (uid range, subnet)
 * and the slot's pinned user + network namespaces with their veth pair stay: they hold no process and no disk
 * state, and the next start reuses them instead of making them again (about a third of a start's kernel
 * work). The environment's disk (with a quota, 0011) stays mounted: its state is observed while stopped.
 * {@link removeEnvironment} releases them all.
 */
export async function stopEnvironment(
  backend: BackendContext,
  environmentId: string,
  graceSeconds: number,
  context: StepContext,
): Promise<void> {
  await stopContainer(backend.runtime, containerId(environmentId), graceSeconds, { signal: context.signal });
  await releaseKernelObjects(backend, environmentId, context.logger, { keepNetwork: true, keepDisk: true });
}

/**
 * Removes the cgroup, (unless `keepNetwork`) the slot's network and namespaces, and every mount of the environment
 * (with `keepDisk`, all but its disk's).
 */
async function releaseKernelObjects(
  backend: BackendContext,
  environmentId: string,
  logger: Logger,
  options: { keepNetwork?: boolean; keepDisk?: boolean } = {},
): Promise<void> {
  const paths = environmentPaths(backend.dataDir, environmentId);
  await backend.cgroups
    .remove(environmentId)
    .catch((error: unknown) => logger.warn({ error: errorMessage(error) }, 'cgroup removal failed'));
  const slot = options.keepNetwork ? undefined : await backend.slots.lookup(environmentId);
  if (slot !== undefined) {
    const info = hostSlot(backend, slot);
    await teardownNetwork(info.slot, { logger });
    await deleteEnvironmentNamespaces(namespacePaths(backend, info), { logger });
  }
  await unmountRootfs({ lowerMountDir: paths.lower, target: paths.rootfs }, { detach: true, logger });
  const disk = environmentPaths(backend.dataDir, environmentId, 'disk').disk;
  await unmountRecursive(paths.dir, { detach: true, logger, ...(options.keepDisk ? { except: [disk] } : {}) });
}

/**
 * {@link EnvironmentBackend.remove}: kills the container, releases every host object, deletes the environment's
 * directory and releases its slot.
 * @throws {WarrenError} `MountBusy` when mounts remain below the directory (nothing is deleted then).
 */
export async function removeEnvironment(backend: BackendContext, environmentId: string, context: StepContext): Promise<void> {
  await stopContainer(backend.runtime, containerId(environmentId), 0, { signal: context.signal });
  await releaseKernelObjects(backend, environmentId, context.logger);
  await releaseDisk(backend, environmentId, context.logger);
  // Nothing may be mounted below the directory before it is deleted (rm would cross into mounts).
  const stillMounted = (await readMountInfo()).some((entry) =>
    entry.mountPoint.startsWith(`${environmentPaths(backend.dataDir, environmentId).dir}/`),
  );
  if (stillMounted) throw new WarrenError('MountBusy', 500, `mounts remain below ${environmentPaths(backend.dataDir, environmentId).dir}`);
  await rm(environmentPaths(backend.dataDir, environmentId).dir, { recursive: true, force: true });
  const slot = await backend.slots.lookup(environmentId);
  if (slot !== undefined) await backend.slots.release(slot);
  context.logger.info({ environmentId }, 'environment removed from host');
}

/**
 * {@link EnvironmentBackend.cleanupOrphans}: removes environments, containers and cgroups whose environment is
 * not in `knownIds`, and (with `sweepUnclaimedNetworks`) the namespaces and links of unclaimed slots.
 * @returns the environment ids, container ids, `cgroup:<name>` and `network:<slot>` entries removed.
 */
export async function cleanupOrphans(backend: BackendContext, knownIds: ReadonlySet<string>, context: StepContext): Promise<string[]> {
  const removed: string[] = [];
  const logger = context.logger;
  // Whole environments this runner has state for.
  for (const id of await listEnvironments(backend)) {
    if (knownIds.has(id)) continue;
    await removeEnvironment(backend, id, context);
    removed.push(id);
  }
  // Loop devices of this data dir's environment disks whose environment is unknown (or whose image is gone).
  removed.push(...(await sweepOrphanLoopDevices(backend, knownIds, logger)));
  // Containers under our state root whose environment is unknown.
  for (const id of await backend.runtime.list()) {
    if (!id.startsWith(CONTAINER_PREFIX)) continue;
    const environmentId = id.slice(CONTAINER_PREFIX.length);
    if (knownIds.has(environmentId)) continue;
    await backend.runtime.delete(id, { force: true });
    removed.push(id);
  }
  // cgroups named after unknown environments (Warren's own background group is none: 0012).
  for (const name of await backend.cgroups.list()) {
    if (knownIds.has(name) || name === BACKGROUND_CGROUP || !isEnvironmentId(name)) continue;
    await backend.cgroups.remove(name).then(
      () => removed.push(`cgroup:${name}`),
      (error: unknown) => logger.warn({ name, error: errorMessage(error) }, 'orphaned cgroup not removed'),
    );
  }
  // Network namespaces and links of slots no environment of this data dir holds (opt-in, see options).
  if (!backend.options.sweepUnclaimedNetworks) return removed;
  const claimed = new Set<number>([...(await backend.slots.list()).keys()].map((slot) => hostSlot(backend, slot).slot));
  const objects = await listNetworkObjects({ logger });
  const slotsSeen = new Set<number>();
  for (const name of [...objects.netns, ...objects.links]) {
    const match = /^warren-?(\d+)[hc]?$/.exec(name);
    if (match) slotsSeen.add(Number(match[1]));
  }
  for (const slot of slotsSeen) {
    if (claimed.has(slot)) continue;
    await teardownNetwork(slot, { logger });
    await deleteEnvironmentNamespaces(namespacePaths(backend, slotInfo(slot)), { logger });
    removed.push(`network:${slot}`);
  }
  return removed;
}
