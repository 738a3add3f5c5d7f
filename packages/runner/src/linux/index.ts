// Public API of the runner's host-tool adapters (runc/crun, cgroups, idmapped mounts, namespaces, network,
// nftables, git, the exec agent, ptys) for the rest of the runner; each module spawns through exec().
export { compileCached, locateCSource } from './c-program.js';
export {
  DISK_MINIMUM_BYTES,
  backingPath,
  createDiskImage,
  detachLoopDevice,
  diskImageSize,
  diskUsage,
  findLoopDevices,
  growDiskImage,
  imageSize,
  listLoopDevices,
  mountDisk,
  unmountDisk,
} from './disk-quota.js';
export type { DiskLayout, DiskUsage, LoopDevice } from './disk-quota.js';
export { INTERACTIVE_CGROUP } from './cgroup-cpu.js';
export type { CgroupCpuSample, InteractiveGroup } from './cgroup-cpu.js';
export { ociLinuxResources } from './cgroup-limits.js';
export type { CgroupLimits, CgroupStats } from './cgroup-limits.js';
export { blockDevicesOf, deviceIoLimits, hasIoLimit, ioControllerAvailable } from './cgroup-io.js';
export { ensureBackgroundCgroup } from './background-cgroup.js';
export type { BackgroundCgroupOptions } from './background-cgroup.js';
export type { BlockDevice, DeviceIoLimits, IoLimits } from './cgroup-io.js';
export { BACKGROUND_CGROUP, CgroupBusyError, CgroupError, CgroupManager } from './cgroups.js';
export type { CgroupManagerOptions, CgroupVersion } from './cgroups.js';
export {
  AGENT_DIR_IN_CONTAINER,
  AGENT_SOCKET_NAME,
  ExecAgentBuildError,
  ExecAgentUnavailableError,
  INIT_PATH_IN_CONTAINER,
  ensureExecAgent,
  execViaAgent,
  initArgs,
} from './exec-agent.js';
export type { AgentExecOptions, AgentExecRequest, AgentExecSession, InitUser } from './exec-agent.js';
export type { ExecSession } from './exec-session.js';
export { ExecError, exec, spawnLogged } from './exec.js';
export type { ExecCgroup, ExecOptions, ExecResult } from './exec.js';
export {
  GitCommandError,
  GitError,
  InvalidGitUrlError,
  RefNotFoundError,
  RepositoryAuthRequiredError,
  RepositoryNotFoundError,
  RepositoryUnreachableError,
  cloneRepository,
} from './git.js';
export type { CloneProgress, CloneRepositoryOptions, CloneResult, GitErrorReason } from './git.js';
export {
  IdmapHelperError,
  createEnvironmentNamespaces,
  deleteEnvironmentNamespaces,
  ensureIdmapHelper,
  readMountInfo,
  unmountRecursive,
} from './idmap.js';
export type { EnvironmentNamespacePaths, MountInfoEntry } from './idmap.js';
export { NetworkError, environmentDns, listNetworkObjects, setupNetwork, teardownNetwork } from './network.js';
export type { EnvironmentDns, NetworkObjects, NetworkSetup } from './network.js';
export { applyFirewall } from './nft.js';
export type { FirewallOptions } from './nft.js';
export { buildOciConfig } from './oci-spec.js';
export { lastOomKillIn, parseOomKills, readKernelLog } from './oom-kills.js';
export type { OomKill } from './oom-kills.js';
export type { BindMount, ContainerConfigInput, OciConfig } from './oci-spec.js';
export { mountRootfs, unmountRootfs } from './overlay.js';
export type { RootfsLayout } from './overlay.js';
export { LXCFS_VIEW_PATHS, lxcfsPaths, startLxcfs } from './lxcfs.js';
export type { LxcfsDaemon, LxcfsOptions, LxcfsStart, LxcfsUnavailableReason, ProcViews } from './lxcfs.js';
export { environmentCpus, readHostCpus } from './cpuset.js';
export { loadNodePty, spawnUnderPty } from './pty.js';
export type { PtySpawnOptions } from './pty.js';
export { CrunRuntime } from './crun-runtime.js';
export { RuncRuntime } from './runc-runtime.js';
export { RoutedOciRuntime, selectOciRuntime } from './runtime-selection.js';
export type { OciRuntimeChoice } from './runtime-selection.js';
export { ContainerNotFoundError, stopContainer } from './runtime.js';
export type { ContainerExecOptions, ContainerState, ContainerStatus, OciRuntime, PreparedExec } from './runtime.js';
export { KERNEL_OBJECT_PREFIX, SLOT_ID_BASE, SLOT_ID_RANGE_SIZE, SlotAllocator, SlotsExhaustedError, slotInfo } from './slots.js';
export type { SlotInfo } from './slots.js';
