// The runner's own lxcfs daemon (Debian package lxcfs): a FUSE filesystem whose /proc and /sys files answer with the
// reading process's cgroup limits, bind-mounted over the container's own. docs/design/0013-honest-proc-views.md.
import { constants, openSync, closeSync } from 'node:fs';
import { access, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import { spawnLogged } from './exec.js';
import { findMount, readMountInfo, unmount } from './idmap.js';
import { detachProcViews } from './proc-views-detach.js';

/**
 * The files Warren takes from lxcfs: each path is both the file under the lxcfs mount and the container path it is
 * bound over (lxc's `lxc.mount.hook` binds the same set, plus /proc/loadavg: without `--enable-loadavg` lxcfs passes
 * the host's through, so Warren leaves it out). Without `--enable-cfs` lxcfs counts CPUs by the cpuset,
 * the same number `nproc` gives (cpuset.ts).
 */
export const LXCFS_VIEW_PATHS: readonly string[] = [
  '/proc/cpuinfo',
  '/proc/diskstats',
  '/proc/meminfo',
  '/proc/stat',
  '/proc/swaps',
  '/proc/uptime',
  '/sys/devices/system/cpu/online',
];

/** The lxcfs views a container gets: `root` is the lxcfs mount point, `paths` those of {@link LXCFS_VIEW_PATHS} it serves. */
export interface ProcViews {
  root: string;
  paths: readonly string[];
}

/** Why the views are off (the runner's `HonestProcViews=False` condition reason). */
export type LxcfsUnavailableReason = 'LxcfsNotInstalled' | 'FuseUnavailable' | 'LxcfsFailed';

/** A running lxcfs owned by one runner data dir. */
export interface LxcfsDaemon {
  readonly views: ProcViews;
  readonly pid: number;
  /** True when a live lxcfs of this data dir (left by a killed runner) was taken over instead of started. */
  readonly adopted: boolean;
  /**
   * Detaches its views from running environments first ({@link detachProcViews}: they fall back to the kernel's
   * files instead of reading ENOTCONN), then stops the daemon (SIGTERM, SIGKILL after 3 s) and removes its mount and
   * pidfile; never throws (failures are logged).
   */
  stop(): Promise<void>;
}

/** {@link startLxcfs}'s outcome: the daemon, or why there is none (never an exception: environments start without views). */
export type LxcfsStart = { daemon: LxcfsDaemon } | { unavailable: { reason: LxcfsUnavailableReason; message: string } };

/** Options of {@link startLxcfs}. */
export interface LxcfsOptions {
  /** Directory owned by this runner: `root/` (the mount point), `lxcfs.pid`, `lxcfs.log`. E.g. `<dataDir>/lxcfs`. */
  dir: string;
  /** The lxcfs binary: a path, or a name looked up in PATH (default `lxcfs`). */
  binary?: string;
  /** The FUSE device (default `/dev/fuse`). */
  fuseDevice?: string;
  /** How long to wait for the mount to appear, ms (default 5000). */
  startTimeoutMs?: number;
  logger?: Logger;
}

/** Host paths of an lxcfs directory. */
export function lxcfsPaths(dir: string): { root: string; pidFile: string; logFile: string } {
  return { root: join(dir, 'root'), pidFile: join(dir, 'lxcfs.pid'), logFile: join(dir, 'lxcfs.log') };
}

/**
 * Starts lxcfs on `<dir>/root` (foreground, own session so a terminal's ^C reaches only the runner, pidfile
 * `<dir>/lxcfs.pid`; no `--enable-cfs`, see {@link LXCFS_VIEW_PATHS}; no `--enable-loadavg`, whose sampling thread
 * costs CPU on every host and delays the daemon's exit by up to 5 s), or takes over a healthy one this dir already has. A stale one (dead
 * process, or a mount answering ENOTCONN) is stopped and unmounted first. A process is only ever signalled when
 * its command line names this dir's mount point, so another runner's lxcfs is never touched.
 * @returns the daemon, or the reason there is none (no lxcfs binary, no /dev/fuse, lxcfs failed to mount).
 */
export async function startLxcfs(options: LxcfsOptions): Promise<LxcfsStart> {
  const logger = options.logger ?? silentLogger;
  const paths = lxcfsPaths(options.dir);
  const binary = await findBinary(options.binary ?? 'lxcfs');
  if (!binary) {
    return { unavailable: { reason: 'LxcfsNotInstalled', message: `${options.binary ?? 'lxcfs'} not found (install the lxcfs package)` } };
  }
  const fuseDevice = options.fuseDevice ?? '/dev/fuse';
  try {
    if (!(await stat(fuseDevice)).isCharacterDevice()) throw new Error('not a character device');
    await access(fuseDevice, constants.R_OK | constants.W_OK);
  } catch (error) {
    return { unavailable: { reason: 'FuseUnavailable', message: `${fuseDevice} is not usable: ${errorMessage(error)}` } };
  }
  await mkdir(paths.root, { recursive: true });

  const previous = await readPid(paths.pidFile);
  const owned = previous !== undefined && (await isOurLxcfs(previous, paths.root));
  if (owned && (await mountHealthy(paths.root))) {
    logger.info({ pid: previous, root: paths.root }, 'lxcfs adopted');
    return { daemon: daemon(paths, previous, true, await servedPaths(paths.root), undefined, logger) };
  }
  if (owned) await terminate(previous, paths.root, logger);
  await cleanMount(paths.root, logger);
  await rm(paths.pidFile, { force: true });

  const log = openSync(paths.logFile, 'w');
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  try {
    const child = spawnLogged([binary, '--foreground', '--pidfile', paths.pidFile, paths.root], {
      detached: true,
      stdio: ['ignore', log, log],
      logger,
    });
    const reaped = new Promise<void>((resolve) => {
      child.on('exit', (code, signal) => {
        exited = { code, signal };
        resolve();
      });
    });
    child.on('error', () => {
      exited ??= { code: null, signal: null };
    });
    child.unref();
    const deadline = performance.now() + (options.startTimeoutMs ?? 5_000);
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      if (exited) break;
      if (child.pid !== undefined && (await mountHealthy(paths.root))) {
        // As the Debian unit (OOMScoreAdjust=-1000): an OOM kill would break /proc in every environment.
        await writeFile(`/proc/${child.pid}/oom_score_adj`, '-1000').catch(() => {});
        logger.info({ pid: child.pid, root: paths.root }, 'lxcfs started');
        return { daemon: daemon(paths, child.pid, false, await servedPaths(paths.root), reaped, logger) };
      }
      if (performance.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    if (child.pid !== undefined && !exited) await terminate(child.pid, paths.root, logger);
  } finally {
    closeSync(log);
  }
  await cleanMount(paths.root, logger);
  const tail = (await readFile(paths.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
  const how = exited ? `exited (code ${exited.code ?? '-'}, signal ${exited.signal ?? '-'})` : 'did not mount in time';
  return { unavailable: { reason: 'LxcfsFailed', message: `lxcfs ${how}${tail ? `: ${tail}` : ''}` } };
}

/** @param reaped resolves once Node has reaped the daemon (our child); undefined for an adopted one. */
function daemon(
  paths: ReturnType<typeof lxcfsPaths>,
  pid: number,
  adopted: boolean,
  served: string[],
  reaped: Promise<void> | undefined,
  logger: Logger,
): LxcfsDaemon {
  let stopped: Promise<void> | undefined;
  return {
    views: { root: paths.root, paths: served },
    pid,
    adopted,
    stop() {
      stopped ??= (async () => {
        try {
          await detachProcViews(paths.root, logger);
          await terminate(pid, paths.root, logger);
          // Our child: wait until it is reaped, so no zombie is left behind (bounded: a missed event is no reason to hang).
          if (reaped) await Promise.race([reaped, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
          await cleanMount(paths.root, logger);
          await rm(paths.pidFile, { force: true });
          logger.info({ pid, root: paths.root }, 'lxcfs stopped');
        } catch (error) {
          logger.warn({ pid, root: paths.root, error: errorMessage(error) }, 'lxcfs stop failed');
        }
      })();
      return stopped;
    },
  };
}

/** The view paths this lxcfs serves (older versions lack some; binding a missing source would fail the start). */
async function servedPaths(root: string): Promise<string[]> {
  const served: string[] = [];
  for (const path of LXCFS_VIEW_PATHS) {
    if (
      await stat(join(root, path)).then(
        () => true,
        () => false,
      )
    )
      served.push(path);
  }
  return served;
}

/** The first executable `name` in PATH (or `name` itself when it contains a slash). */
async function findBinary(name: string): Promise<string | undefined> {
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter).map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

async function readPid(pidFile: string): Promise<number | undefined> {
  const text = await readFile(pidFile, 'utf8').catch(() => undefined);
  const pid = Number(text?.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

/**
 * Whether `pid` is an lxcfs serving `root` (its argv[0] ends in `lxcfs` and an argument is `root`): the guard that
 * keeps a recycled pid or another runner's daemon from being signalled.
 */
export function isLxcfsCommandLine(cmdline: string, root: string): boolean {
  const argv = cmdline.split('\0').filter((arg) => arg !== '');
  return argv.length > 0 && /(^|\/)lxcfs$/.test(argv[0]!) && argv.slice(1).includes(root);
}

async function isOurLxcfs(pid: number, root: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  return cmdline !== undefined && isLxcfsCommandLine(cmdline, root);
}

/** Mounted as lxcfs and answering (a dead daemon's mount fails stat with ENOTCONN). */
async function mountHealthy(root: string): Promise<boolean> {
  const mount = findMount(await readMountInfo(), root);
  if (mount?.fsType !== 'fuse.lxcfs') return false;
  try {
    await stat(join(root, 'proc', 'meminfo'));
    return true;
  } catch {
    return false;
  }
}

/** Unmounts whatever is at `root` (lazily: containers may still bind its files). */
async function cleanMount(root: string, logger: Logger): Promise<void> {
  await unmount(root, { detach: true, logger });
}

/** SIGTERM (lxcfs then unmounts and removes its pidfile), SIGKILL after 3 s; only while `pid` is still our lxcfs. */
async function terminate(pid: number, root: string, logger: Logger): Promise<void> {
  for (const [signal, waitMs] of [
    ['SIGTERM', 3_000],
    ['SIGKILL', 2_000],
  ] as const) {
    if (!(await isOurLxcfs(pid, root))) return;
    try {
      process.kill(pid, signal);
    } catch {
      return; // gone
    }
    const deadline = performance.now() + waitMs;
    while (performance.now() < deadline) {
      if (!(await isOurLxcfs(pid, root))) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    logger.warn({ pid, signal }, 'lxcfs did not exit');
  }
}
