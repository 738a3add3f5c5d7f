// What the Linux backend reads back from the host: an environment's observed state, the environments this
// data dir holds, and where a running environment is reachable.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerState, EnvironmentNetwork, ObservedEnvironment } from '../environment/index.js';
import type { BackendContext } from './context.js';
import { ensureDiskMounted, observeDisk } from './disk.js';
import { observeOomKills } from './oom.js';
import { containerId, exists, hostSlot, isEnvironmentId } from './paths.js';
import { readState, startIdOf } from './state-file.js';

/**
 * {@link EnvironmentBackend.observe}: derives the environment's state from its directory, slot claim, runtime
 * state and state file.
 */
export async function observeEnvironment(backend: BackendContext, environmentId: string): Promise<ObservedEnvironment> {
  // After a host reboot the environment's disk is mounted again first, so its state is what is observed.
  const paths = await ensureDiskMounted(backend, environmentId, backend.logger);
  const [dirExists, slot, runtimeState, state, disk] = await Promise.all([
    exists(paths.dir),
    backend.slots.lookup(environmentId),
    backend.runtime.state(containerId(environmentId)),
    readState(backend.dataDir, environmentId),
    observeDisk(paths),
  ]);
  const contentReady = await exists(join(paths.workspace, '.git'));
  let container: ObservedEnvironment['container'] = { state: 'absent' };
  let memory: ObservedEnvironment['memory'];
  if (runtimeState) {
    const mapped: ContainerState = runtimeState.status === 'creating' ? 'created' : runtimeState.status;
    const startId = mapped === 'running' || mapped === 'paused' ? await startIdOf(runtimeState) : undefined;
    container = {
      state: mapped,
      ...(startId ? { startId } : {}),
      ...(startId && state?.container?.startId === startId ? { startedTime: state.container.startedTime } : {}),
    };
    if (startId) memory = await observeOomKills(backend, environmentId, startId);
  }
  return {
    exists: dirExists || slot !== undefined || runtimeState !== undefined,
    contentReady,
    ...(state?.commit ? { commit: state.commit } : {}),
    ...(state?.resolved ? { resolved: state.resolved.summary } : {}),
    container,
    ...(disk ? { disk } : {}),
    ...(memory ? { memory } : {}),
    lifecycle: {
      createDone: state?.lifecycle.createDone ?? false,
      ...(state?.lifecycle.postStartDoneFor ? { postStartDoneFor: state.lifecycle.postStartDoneFor } : {}),
      ...(state?.lifecycle.failure ? { failure: state.lifecycle.failure } : {}),
    },
  };
}

/** The ids of environments with a directory or a slot claim in this data dir, sorted. */
export async function listEnvironments(backend: BackendContext): Promise<string[]> {
  const fromDirs = await readdir(join(backend.dataDir, 'environments')).catch(() => [] as string[]);
  const fromSlots = [...(await backend.slots.list()).values()];
  return [...new Set([...fromDirs.filter(isEnvironmentId), ...fromSlots])].sort();
}

/** The veth address of the environment's slot and its container's init pid; undefined unless running. */
export async function environmentNetwork(backend: BackendContext, environmentId: string): Promise<EnvironmentNetwork | undefined> {
  const [claim, state] = await Promise.all([backend.slots.lookup(environmentId), backend.runtime.state(containerId(environmentId))]);
  if (claim === undefined || state?.status !== 'running' || state.pid <= 0) return undefined;
  return { address: hostSlot(backend, claim).environmentAddress, pid: state.pid };
}
