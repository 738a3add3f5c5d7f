// Generates an environment container's OCI config.json (runtime spec 1.0.2 as implemented by runc 1.1).
// Docker's defaults (capabilities, masked/readonly paths, seccomp) with a user namespace and a given netns.
import { readFileSync } from 'node:fs';
import { InvalidError, type ErrorCause } from '@warren/base';
import type { ProcViews } from './lxcfs.js';
import { dockerDefaultSeccomp, type OciSeccomp } from './seccomp.js';

/** An OCI mount (config.md "Mounts"). */
export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

/** An OCI POSIX rlimit (config.md "POSIX process"); `hard`/`soft` in the limit's own unit. */
export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

/** An OCI id mapping (config-linux.md "User namespace mappings"). */
export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** An OCI device cgroup rule (config-linux.md "Device allowlist"). */
export interface OciDeviceCgroup {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access?: string;
}

/**
 * OCI `linux.resources` (config-linux.md "Control groups"). Only the fields Warren uses are typed;
 * memory/swap in bytes, cpu quota/period in microseconds, pids as a count.
 */
export interface OciResources {
  devices?: OciDeviceCgroup[];
  memory?: { limit?: number; reservation?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit: number };
  [other: string]: unknown;
}

/** The OCI config.json document Warren generates (a subset of the spec's fields, all it sets). */
export interface OciConfig {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    rlimits: OciRlimit[];
    noNewPrivileges: boolean;
    /**
     * Always 0: the runner runs with a negative `oom_score_adj` (so the kernel kills environments before Warren), and
     * without this the container's processes would inherit it (docs/design/0010-requests-and-limits.md).
     */
    oomScoreAdj: number;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: {
    uidMappings: OciIdMapping[];
    gidMappings: OciIdMapping[];
    namespaces: Array<{ type: string; path?: string }>;
    cgroupsPath: string;
    resources: OciResources;
    seccomp: OciSeccomp;
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

/** A bind mount from the host into the container. */
export interface BindMount {
  /** Absolute host path (file or directory). */
  source: string;
  /** Absolute path inside the container. */
  destination: string;
  readonly?: boolean;
  /** Further mount(8) flags for the bind, e.g. `nosuid`, `nodev`, `noexec`. */
  options?: string[];
}

/** Input of {@link buildOciConfig}. */
export interface ContainerConfigInput {
  /** Absolute host path of the container's root filesystem (normally the overlay mount point). */
  rootfsPath: string;
  hostname: string;
  process: {
    args: string[];
    /** `KEY=value` strings. */
    env: string[];
    /** Absolute path inside the container. */
    cwd: string;
    uid: number;
    gid: number;
    additionalGids?: number[];
    terminal?: boolean;
  };
  /** Container id 0 maps to host id `hostId`, for `size` ids; used for both uids and gids. */
  idMapping: { hostId: number; size: number };
  /** Path of a prepared network namespace, e.g. `/run/netns/warren-env-1`. */
  networkNamespacePath: string;
  /**
   * Path of a prepared user namespace with the same mapping, owning the network namespace (made by
   * `createEnvironmentNamespaces`). Without it the runtime creates the user namespace, the netns is then
   * owned by the host's, and `runc exec` cannot join it (setns EPERM) — only use that for tests without exec.
   */
  userNamespacePath?: string;
  /** cgroup path for the runtime (cgroupfs driver), e.g. `/warren/env-1`. */
  cgroupsPath: string;
  /**
   * Extra bind mounts: the workspace folder and the files for `/etc/resolv.conf`, `/etc/hosts` and
   * `/etc/hostname` (the caller provides those files; Docker does the same).
   */
  mounts: BindMount[];
  /**
   * lxcfs views (linux/lxcfs.ts): each of `paths` (e.g. `/proc/meminfo`) is bound read-only from under `root` over the
   * container's own file, after /proc and /sys are mounted. Absent: the kernel's files (the host's figures).
   */
  procViews?: ProcViews;
  /** OCI `linux.resources`; the default device deny-all is added when `devices` is absent. */
  resources?: OciResources;
  /** Overrides the rlimits; default: {@link defaultRlimits} of this host. */
  rlimits?: OciRlimit[];
}

/** Docker's default capability set (moby oci/caps/defaults.go `DefaultCapabilities`). */
export const DOCKER_DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Docker's default masked paths (moby oci/defaults.go `DefaultLinuxSpec`). */
export const DOCKER_MASKED_PATHS: readonly string[] = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Docker's default read-only paths (moby oci/defaults.go `DefaultLinuxSpec`). */
export const DOCKER_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Highest nofile Warren asks for even when the host allows more (Docker's usual daemon default). */
const MAX_NOFILE = 1_048_576;

/**
 * Reads this process's hard limit for one resource from `/proc/self/limits` (proc(5)).
 * @param name the row's label, e.g. `Max open files`.
 * @returns the hard limit, or `undefined` when it is `unlimited` or the row is missing.
 */
export function readHardLimit(name: string, limitsText: string = readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  for (const line of limitsText.split('\n')) {
    if (!line.startsWith(name)) continue;
    const fields = line.slice(name.length).trim().split(/\s+/);
    const hard = fields[1];
    if (hard === undefined || hard === 'unlimited') return undefined;
    const value = Number(hard);
    return Number.isSafeInteger(value) ? value : undefined;
  }
  return undefined;
}

/**
 * The rlimits Warren sets: RLIMIT_NOFILE soft = hard = min(host hard limit, 1048576).
 * Every other limit is inherited from the runtime. A limit above the host's hard limit fails container
 * start with EPERM when root lacks CAP_SYS_RESOURCE (setrlimit(2)), as on hosts like this one.
 * @param limitsText contents of `/proc/self/limits` (default: read it).
 */
export function defaultRlimits(limitsText?: string): OciRlimit[] {
  const hard = readHardLimit('Max open files', limitsText) ?? MAX_NOFILE;
  const nofile = Math.min(hard, MAX_NOFILE);
  return [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }];
}

function isAbsolute(path: string): boolean {
  return path.startsWith('/');
}

function validate(input: ContainerConfigInput): void {
  const causes: ErrorCause[] = [];
  const requireAbsolute = (field: string, value: string): void => {
    if (!isAbsolute(value)) causes.push({ field, message: `must be an absolute path, got "${value}"` });
  };
  requireAbsolute('rootfsPath', input.rootfsPath);
  requireAbsolute('process.cwd', input.process.cwd);
  requireAbsolute('networkNamespacePath', input.networkNamespacePath);
  if (input.userNamespacePath !== undefined) requireAbsolute('userNamespacePath', input.userNamespacePath);
  requireAbsolute('cgroupsPath', input.cgroupsPath);
  if (input.process.args.length === 0) causes.push({ field: 'process.args', message: 'must not be empty' });
  input.process.env.forEach((entry, index) => {
    if (!entry.includes('=')) causes.push({ field: `process.env[${index}]`, message: 'must be KEY=value' });
  });
  const { hostId, size } = input.idMapping;
  if (!Number.isSafeInteger(hostId) || hostId <= 0) causes.push({ field: 'idMapping.hostId', message: 'must be a positive integer' });
  if (!Number.isSafeInteger(size) || size <= 0) causes.push({ field: 'idMapping.size', message: 'must be a positive integer' });
  for (const [field, id] of [
    ['process.uid', input.process.uid],
    ['process.gid', input.process.gid],
  ] as const) {
    if (!Number.isSafeInteger(id) || id < 0 || id >= size) causes.push({ field, message: `must be mapped (0 ≤ id < ${size})` });
  }
  if (input.procViews) {
    requireAbsolute('procViews.root', input.procViews.root);
    input.procViews.paths.forEach((path, index) => {
      if (!/^\/(proc|sys)\/[^.]/.test(path) || path.includes('/..')) {
        causes.push({ field: `procViews.paths[${index}]`, message: `must be a file under /proc or /sys, got "${path}"` });
      }
    });
  }
  input.mounts.forEach((mount, index) => {
    requireAbsolute(`mounts[${index}].source`, mount.source);
    requireAbsolute(`mounts[${index}].destination`, mount.destination);
  });
  if (causes.length > 0) throw new InvalidError('invalid container configuration', causes, 'InvalidContainerConfig');
}

/**
 * The standard mounts (runc's `runc spec` defaults plus Docker's /dev/mqueue).
 * /sys: a fresh sysfs needs CAP_SYS_ADMIN over the network namespace's owner. When the netns is owned by
 * the container's user namespace (`ownsNetwork`) it is mounted read-only as usual; otherwise, like Docker
 * with userns-remap and a foreign netns (moby daemon/oci_linux.go `WithNamespaces`), /sys is a read-only bind.
 */
function standardMounts(ownsNetwork: boolean): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    ...(ownsNetwork
      ? [
          { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
          // The container's own cgroups, read-only (as Docker): lets the JVM, Node etc. see their limits.
          { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
        ]
      : [{ destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }]),
  ];
}

/**
 * The binds of lxcfs's files over the container's /proc and /sys files (as lxc's `lxc.mount.hook`). runc accepts
 * binds onto /proc only for these files (libcontainer `checkProcMount`: cpuinfo, diskstats, meminfo, stat, swaps,
 * uptime, loadavg, slabinfo), which exist for lxcfs. Read-only, nosuid, nodev, noexec.
 */
export function procViewMounts(views: ProcViews): OciMount[] {
  const root = views.root.replace(/\/+$/, '');
  return views.paths.map((path) => ({
    destination: path,
    type: 'bind',
    source: `${root}${path}`,
    options: ['bind', 'rprivate', 'ro', 'nosuid', 'nodev', 'noexec'],
  }));
}

/**
 * Builds the OCI config.json for an environment container.
 * - Namespaces: user (container 0 → `idMapping.hostId`; joined by `userNamespacePath` when given, else
 *   new), new mount, pid, ipc, uts; network joined by path.
 * - Capabilities: Docker's default set in bounding/effective/permitted, none inheritable or ambient
 *   (so a non-root process starts without capabilities, as in Docker); `noNewPrivileges: false` so
 *   setuid programs such as sudo work.
 * - Seccomp: Docker's default profile ({@link dockerDefaultSeccomp}); masked/readonly paths as Docker.
 * - Mounts: /proc, /dev, /dev/pts (newinstance), /dev/shm, /dev/mqueue, /sys (read-only bind, see
 *   `standardMounts`), the lxcfs views ({@link procViewMounts}) when `procViews` is given, then `input.mounts` in order as `rbind` mounts (plus `ro` when readonly and their
 *   own `options`); a later mount may sit inside an earlier one (the exec agent's init in its directory).
 * - Resources: `input.resources`, with a deny-all device rule added if no device rules are given
 *   (runc then appends its default allowed devices).
 * @returns a JSON-serialisable config (OCI runtime spec 1.0.2).
 * @throws {InvalidError} reason `InvalidContainerConfig` for relative paths, empty args, env entries
 *   without `=`, a view path outside /proc and /sys, a non-positive mapping, or a process uid/gid outside the mapping.
 */
export function buildOciConfig(input: ContainerConfigInput): OciConfig {
  validate(input);
  const capabilities = [...DOCKER_DEFAULT_CAPABILITIES];
  const mapping: OciIdMapping[] = [{ containerID: 0, hostID: input.idMapping.hostId, size: input.idMapping.size }];
  const resources: OciResources = { ...(input.resources ?? {}) };
  if (!resources.devices) resources.devices = [{ allow: false, access: 'rwm' }];
  const user: OciConfig['process']['user'] = { uid: input.process.uid, gid: input.process.gid };
  if (input.process.additionalGids && input.process.additionalGids.length > 0) user.additionalGids = [...input.process.additionalGids];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: input.process.terminal ?? false,
      user,
      args: [...input.process.args],
      env: [...input.process.env],
      cwd: input.process.cwd,
      capabilities: {
        bounding: [...capabilities],
        effective: [...capabilities],
        permitted: [...capabilities],
        inheritable: [],
        ambient: [],
      },
      rlimits: input.rlimits ?? defaultRlimits(),
      noNewPrivileges: false,
      oomScoreAdj: 0,
    },
    root: { path: input.rootfsPath, readonly: false },
    hostname: input.hostname,
    mounts: [
      ...standardMounts(input.userNamespacePath !== undefined),
      ...(input.procViews ? procViewMounts(input.procViews) : []),
      ...input.mounts.map((mount): OciMount => ({
        destination: mount.destination,
        type: 'bind',
        source: mount.source,
        options: ['rbind', 'rprivate', ...(mount.readonly ? ['ro'] : []), ...(mount.options ?? [])],
      })),
    ],
    linux: {
      uidMappings: mapping.map((entry) => ({ ...entry })),
      gidMappings: mapping.map((entry) => ({ ...entry })),
      namespaces: [
        input.userNamespacePath === undefined ? { type: 'user' } : { type: 'user', path: input.userNamespacePath },
        { type: 'mount' },
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'network', path: input.networkNamespacePath },
      ],
      cgroupsPath: input.cgroupsPath,
      resources,
      seccomp: dockerDefaultSeccomp(capabilities),
      maskedPaths: [...DOCKER_MASKED_PATHS],
      readonlyPaths: [...DOCKER_READONLY_PATHS],
    },
  };
}
