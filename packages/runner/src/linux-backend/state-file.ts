// The Linux backend's per-environment state file (`state.json`): what resolve, start and the lifecycle
// commands leave behind for the next step, even across runner restarts.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import type { ContainerState as RuntimeState } from '../linux/index.js';
import type { ResolvedEnvironment } from '../environment/index.js';
import type { ResolvedDevcontainer } from '../devcontainer/index.js';
import { environmentPaths } from './paths.js';
import type { UserCache } from './users.js';

/** What the backend persists per environment (`state.json`). */
export interface EnvironmentStateFile {
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

/**
 * Reads environment `id`'s state file.
 * @returns undefined when there is none yet.
 * @throws the read or JSON error otherwise.
 */
export async function readState(dataDir: string, id: string): Promise<EnvironmentStateFile | undefined> {
  try {
    return JSON.parse(await readFile(environmentPaths(dataDir, id).state, 'utf8')) as EnvironmentStateFile;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Applies `change` to environment `id`'s state (a fresh one when there is none) and writes it atomically
 * (temporary file, then rename(2)).
 * @returns the state as written.
 */
export async function updateState(
  dataDir: string,
  id: string,
  change: (state: EnvironmentStateFile) => void,
): Promise<EnvironmentStateFile> {
  const state = (await readState(dataDir, id)) ?? { version: 1, environmentId: id, lifecycle: { createDone: false } };
  change(state);
  const paths = environmentPaths(dataDir, id);
  const file = paths.state;
  await mkdir(paths.dir, { recursive: true });
  const temporary = `${file}.tmp-${process.pid}`;
  await writeFile(temporary, JSON.stringify(state, null, 2));
  await rename(temporary, file);
  return state;
}

/**
 * `<pid>-<starttime>` of init: unique per container start (proc(5) /proc/pid/stat field 22).
 * @returns undefined when the container has no live init.
 */
export async function startIdOf(state: RuntimeState): Promise<string | undefined> {
  if (state.pid <= 0) return undefined;
  try {
    const text = await readFile(`/proc/${state.pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return `${state.pid}-${fields[19] ?? '0'}`;
  } catch {
    return undefined;
  }
}
