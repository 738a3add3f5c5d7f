// What the Linux backend's modules share: the backend's options and the host objects made once by create().
import type { EnvironmentClassSpec } from '@warren/api';
import type { Logger } from '@warren/base';
import type { DevcontainerBuilder } from '../builder/index.js';
import type { ExecCgroup } from '../linux/index.js';
import type { RunnerConfig } from '../config.js';
import type { ImageStore } from '../image/index.js';
import type { CgroupManager, EnvironmentDns, OciRuntime, ProcViews, SlotAllocator } from '../linux/index.js';

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
  /**
   * lxcfs views bound over /proc and /sys files of containers started from now on (the runner's lxcfs,
   * linux/lxcfs.ts); absent: containers see the kernel's files.
   */
  procViews?: ProcViews;
}

/**
 * The backend's host objects, made once by {@link LinuxBackend.create} and handed to every module of this
 * folder as its first argument (the modules keep no state of their own, except the resolver's caches).
 */
export interface BackendContext {
  /** The runner's data directory (layout: see paths.ts). */
  readonly dataDir: string;
  readonly options: LinuxBackendOptions;
  /** The backend's logger (`component: linux-backend`), for work not tied to one step. */
  readonly logger: Logger;
  readonly images: ImageStore;
  readonly slots: SlotAllocator;
  readonly runtime: OciRuntime;
  readonly cgroups: CgroupManager;
  /** Host path of the compiled idmap helper. */
  readonly helperPath: string;
  /** The environments' resolv.conf and the host's DNS addresses. */
  readonly dns: EnvironmentDns;
  /** The compiled exec agent (host path), or undefined when disabled or unavailable. */
  readonly agentPath: string | undefined;
  /** Warren's background cgroup for its heavy IO (git clone; docs/design/0012-io-limits.md), when it could be made. */
  readonly backgroundCgroup?: ExecCgroup | undefined;
}
