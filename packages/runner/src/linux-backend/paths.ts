// Where the Linux backend keeps each environment on the host, and the names it gives host objects.
//
// Layout under `<dataDir>`:
//   images/                     ImageStore root (shared, read-only layers)
//   bin/                        the compiled idmap helper and exec agent (the containers' init)
//   slots/                      slot claims (uid range, subnet, kernel object names per environment)
//   environments/<id>/
//     workspace/                the clone, bind-mounted at workspaceFolder
//     upper/ work/ lower/<i>/   overlay upper and work dirs, idmapped views of the image layers
//     disk.img                  with a disk quota (0011): the sparse ext4 image of the environment's disk, and
//     disk/                     its mount point, holding workspace/, upper/ and work/ instead of the dir itself
//     rootfs/                   overlay mount point (the OCI root.path)
//     bundle/config.json        the OCI config
//     agent/                      the exec agent's directory (owned by the container's root, mode 0700), at
//                                 /dev/.warren in the container: exec.sock, and the init binary's mountpoint
//     resolv.conf hosts hostname
//     logs/lifecycle.log        lifecycle command output (`warren env logs`)
//     state.json                resolved devcontainer, image, lifecycle markers
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError } from '@warren/base';
import { AGENT_SOCKET_NAME, type EnvironmentNamespacePaths, KERNEL_OBJECT_PREFIX, type SlotInfo, slotInfo } from '../linux/index.js';
import type { BackendContext } from './context.js';

/** Prefix of container ids; the rest is the environment id (so a restarted runner can map them back). */
export const CONTAINER_PREFIX = `${KERNEL_OBJECT_PREFIX}-`;

const STATE_FILE = 'state.json';

/** File name of an environment's disk image (the loop device's backing file) in its directory. */
export const DISK_IMAGE_NAME = 'disk.img';

/**
 * Where an environment's writable state (workspace, overlay upper and work dirs) lives: `plain` in its directory
 * (environments without a disk quota, and every environment made before quotas), `disk` on its disk, mounted at
 * `<dir>/disk` (0011).
 */
export type StateLayout = 'plain' | 'disk';

/** Absolute host paths of one environment's files (see the layout above). */
export interface EnvironmentPaths {
  dir: string;
  /** The disk image (may not exist: only environments with a quota have one). */
  diskImage: string;
  /** The disk's mount point in the `disk` layout; the environment's directory in the `plain` layout. */
  disk: string;
  workspace: string;
  upper: string;
  work: string;
  lower: string;
  rootfs: string;
  bundle: string;
  resolvConf: string;
  hosts: string;
  hostname: string;
  logs: string;
  lifecycleLog: string;
  agent: string;
  agentSocket: string;
  state: string;
}

/**
 * The paths of environment `id` under `dataDir`, with its writable state in `layout` (the caller knows which:
 * see disk.ts; `plain` by default).
 * @throws {InvalidError} when `id` is not a valid environment id (it becomes a path component).
 */
export function environmentPaths(dataDir: string, id: string, layout: StateLayout = 'plain'): EnvironmentPaths {
  assertEnvironmentId(id);
  const dir = join(dataDir, 'environments', id);
  const state = layout === 'disk' ? join(dir, 'disk') : dir;
  return {
    dir,
    diskImage: join(dir, DISK_IMAGE_NAME),
    disk: state,
    workspace: join(state, 'workspace'),
    upper: join(state, 'upper'),
    work: join(state, 'work'),
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

/** The OCI runtime's container id of an environment: {@link CONTAINER_PREFIX} + its id. */
export function containerId(environmentId: string): string {
  return `${CONTAINER_PREFIX}${environmentId}`;
}

/** The host-wide slot of a claim in this data dir: the claim plus `config.slotOffset`. */
export function hostSlot(backend: BackendContext, claim: number): SlotInfo {
  return slotInfo(claim + backend.options.config.slotOffset);
}

/** Where the slot's persistent user namespace (under `userNamespaceDir`) and network namespace are pinned. */
export function namespacePaths(backend: BackendContext, slot: SlotInfo): EnvironmentNamespacePaths {
  return {
    userNamespacePath: join(backend.options.userNamespaceDir ?? '/run/warren/userns', slot.netnsName),
    networkNamespacePath: slot.netnsPath,
  };
}

const ENVIRONMENT_ID = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** Whether `id` may be an environment id (lower-case letters, digits, `.`, `_`, `-`; at most 128 characters). */
export function isEnvironmentId(id: string): boolean {
  return ENVIRONMENT_ID.test(id);
}

/** Environment ids become path components and container ids; reject anything else. */
function assertEnvironmentId(id: string): void {
  if (!isEnvironmentId(id)) throw new InvalidError(`invalid environment id "${id}"`, [{ field: 'metadata.id', message: 'not a valid id' }]);
}

/** Whether `path` exists (any file type); false on any error. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
