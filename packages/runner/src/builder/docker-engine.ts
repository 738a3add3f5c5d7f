// The Docker engine the runner starts and owns for image builds (DESIGN.md "builder backend"): a private
// dockerd with its own data root, exec root, pid file and socket under <dataDir>/builder/, never the host's
// /var/lib/docker or /var/run/docker.sock, and no bridge or iptables rules of its own.
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, openSync, closeSync } from 'node:fs';
import { access, chmod, mkdir, readFile, readdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { type Logger, errorMessage, silentLogger, sleep } from '@warren/base';
import { type ExecOptions, type ExecResult, exec, spawnLogged, unmountRecursive } from '../linux/index.js';
import { DockerEngineError, DockerNotInstalledError } from './errors.js';

/** Options of {@link DockerEngine}. */
export interface DockerEngineOptions {
  /** Warren's data directory (`WARREN_DATA_DIR`); the engine lives in `<dataDir>/builder/`. */
  dataDir: string;
  logger?: Logger;
  /** The daemon binary, a name looked up on PATH or an absolute path (default `dockerd`, Debian docker.io). */
  dockerdPath?: string;
  /** The docker CLI, a name looked up on PATH or an absolute path (default `docker`). */
  dockerPath?: string;
  /** How long to wait for the socket to answer `GET /_ping` after starting dockerd, in ms (default 60 000). */
  startTimeoutMs?: number;
  /** Grace period between SIGTERM and SIGKILL in {@link DockerEngine.stop}, in ms (default 20 000). */
  stopGraceMs?: number;
}

/**
 * Prefix of the containerd namespace and the cgroup parent of an engine's containers. Each engine appends a
 * hash of its root ({@link DockerEngine.namespace}), so engines of several data directories on one host (two
 * runners, parallel tests) never touch each other's cgroups, and nothing collides with a host's own Docker
 * (`moby`, `/docker`).
 */
export const BUILDER_NAMESPACE = 'warren-builder';

/** Linux `sockaddr_un.sun_path` holds 108 bytes including the terminating NUL (unix(7)). */
const MAX_SOCKET_PATH = 107;

/**
 * A private dockerd for devcontainer builds.
 *
 * Networking decision: dockerd runs with `--bridge=none --iptables=false --ip-masq=false --ip-forward=false`,
 * so it creates no `docker0`, no iptables chains and changes no sysctl (host-feasibility.md §5 found both left
 * behind by a default dockerd). Containers it runs get only a loopback interface. Image builds need the network
 * for `RUN apt-get ...`, so the CLI path handed to the devcontainer CLI ({@link dockerCliPath}) is a wrapper
 * that adds `--network=host` to `docker build` and `docker buildx build`: RUN steps share the host's network
 * namespace, as `docker build --network=host` does. Build steps run as real root (not in a user namespace);
 * that is the trust model of the reference builder, not of Warren environments.
 *
 * Lifecycle: {@link ensureRunning} is idempotent and adopts a dockerd left running by an earlier runner
 * process (found through its pid file and socket); dockerd is started detached, so it survives a runner
 * restart. {@link stop} terminates it and removes its processes, mounts, cgroups and runtime files.
 * Outside {@link root}, dockerd 20.10 and containerd 1.6 still create paths they hard-code: the empty
 * directories /run/docker/plugins and /run/containerd/s, and the trust key /etc/docker/key.json. They are
 * shared with a host's own Docker, so they are left in place.
 */
export class DockerEngine {
  /** `<dataDir>/builder`: everything of the builder backend lives here. */
  readonly root: string;
  /** dockerd `--data-root`: images, layers, build cache. Kept by {@link stop} unless `removeData` is set. */
  readonly dataRoot: string;
  /** dockerd `--exec-root`: its managed containerd, netns files, plugin sockets. */
  readonly execRoot: string;
  readonly pidFile: string;
  readonly socketPath: string;
  readonly logFile: string;
  /** The path to pass as `--docker-path` to the devcontainer CLI (a wrapper, see the class comment). */
  readonly dockerCliPath: string;
  /** `DOCKER_CONFIG` for every docker CLI call, so a host user's ~/.docker (credential helpers ...) is not used. */
  readonly dockerConfigDir: string;
  /**
   * `warren-builder-<first 8 hex of sha256(root)>`: the containerd namespace and the cgroup parent of this
   * engine's containers (`/sys/fs/cgroup/<controller>/<namespace>/<container id>` with cgroupfs).
   */
  readonly namespace: string;

  private readonly logger: Logger;
  private readonly dockerdName: string;
  private readonly dockerName: string;
  private readonly startTimeoutMs: number;
  private readonly stopGraceMs: number;
  private starting: Promise<void> | undefined;
  private resolvedDocker: string | undefined;

  constructor(options: DockerEngineOptions) {
    this.root = join(options.dataDir, 'builder');
    this.dataRoot = join(this.root, 'docker');
    this.execRoot = join(this.root, 'run');
    this.pidFile = join(this.root, 'dockerd.pid');
    this.socketPath = join(this.root, 'docker.sock');
    this.logFile = join(this.root, 'dockerd.log');
    this.dockerCliPath = join(this.root, 'bin', 'docker');
    this.dockerConfigDir = join(this.root, 'docker-config');
    this.namespace = `${BUILDER_NAMESPACE}-${createHash('sha256').update(resolve(this.root)).digest('hex').slice(0, 8)}`;
    this.logger = (options.logger ?? silentLogger).child({ component: 'docker-engine' });
    this.dockerdName = options.dockerdPath ?? 'dockerd';
    this.dockerName = options.dockerPath ?? 'docker';
    this.startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.stopGraceMs = options.stopGraceMs ?? 20_000;
  }

  /** `unix://<socketPath>`, the value of `DOCKER_HOST` for this engine. */
  get host(): string {
    return `unix://${this.socketPath}`;
  }

  /**
   * The environment for docker CLI and devcontainer CLI processes talking to this engine: the runner's own
   * environment plus `DOCKER_HOST` and `DOCKER_CONFIG` (and without `DOCKER_CONTEXT`/`DOCKER_TLS_VERIFY`).
   */
  environment(): NodeJS.ProcessEnv {
    const environment: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: this.host, DOCKER_CONFIG: this.dockerConfigDir };
    delete environment.DOCKER_CONTEXT;
    delete environment.DOCKER_TLS_VERIFY;
    delete environment.DOCKER_CERT_PATH;
    return environment;
  }

  /**
   * Starts dockerd unless it already answers on {@link socketPath} (this process's or an earlier runner's).
   * Concurrent calls share one start.
   * @returns once `GET /_ping` on the socket answers 200.
   * @throws {DockerNotInstalledError} when `dockerd` or `docker` is not on PATH.
   * @throws {DockerEngineError} when dockerd exits or does not answer within `startTimeoutMs` (message has its log tail).
   */
  ensureRunning(signal?: AbortSignal): Promise<void> {
    this.starting ??= this.start(signal).finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /** @returns true when the engine's socket answers `GET /_ping` with 200 within 2 s. */
  async isRunning(): Promise<boolean> {
    return ping(this.socketPath);
  }

  /** The pid recorded in the pid file when that process is alive and is a dockerd of this engine. */
  async runningPid(): Promise<number | undefined> {
    const text = await readFile(this.pidFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const cmdline = await readCmdline(pid);
    const ours =
      cmdline !== undefined && cmdline.some((arg) => arg.endsWith('dockerd')) && cmdline.includes(`--data-root=${this.dataRoot}`);
    return ours ? pid : undefined;
  }

  /**
   * Runs the docker CLI against this engine (through the exec seam).
   * @throws {ExecError} on a non-zero exit; {@link DockerNotInstalledError} when docker is missing.
   */
  async docker(args: readonly string[], options: Omit<ExecOptions, 'env'> = {}): Promise<ExecResult> {
    const docker = await this.resolveDocker();
    return exec([docker, ...args], { logger: this.logger, ...options, env: this.environment() });
  }

  /**
   * Stops the engine: SIGTERM to dockerd (which stops its containers), SIGKILL after `stopGraceMs`, then kills
   * any process still referring to the engine's directories (containerd, shims) or in its cgroups, unmounts
   * everything at or below {@link dataRoot} and {@link execRoot}, and removes the exec root, socket and pid file. Safe to call when nothing runs.
   * @param options.removeData also delete the data root, archives and everything else under {@link root}.
   */
  async stop(options: { removeData?: boolean } = {}): Promise<void> {
    const pid = await this.runningPid();
    if (pid !== undefined) {
      this.logger.info({ pid }, 'stopping docker engine');
      signalProcess(pid, 'SIGTERM');
      if (!(await waitForExit(pid, this.stopGraceMs))) {
        this.logger.warn({ pid, graceMs: this.stopGraceMs }, 'dockerd did not stop in time; killing it');
        signalProcess(pid, 'SIGKILL');
        await waitForExit(pid, 5_000);
      }
    }
    await this.removeLeftovers();
    if (options.removeData) await rm(this.root, { recursive: true, force: true });
    this.logger.info({ removeData: options.removeData ?? false }, 'docker engine stopped');
  }

  private async start(signal?: AbortSignal): Promise<void> {
    const docker = await this.resolveDocker();
    if (await ping(this.socketPath)) {
      await this.writeCliWrapper(docker);
      this.logger.info({ pid: await this.runningPid(), socket: this.socketPath }, 'docker engine adopted');
      return;
    }
    const dockerd = await findExecutable(this.dockerdName);
    if (dockerd === undefined) throw new DockerNotInstalledError(this.dockerdName);
    for (const path of [this.socketPath, join(this.execRoot, 'containerd', 'containerd-debug.sock')]) {
      if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        throw new DockerEngineError(
          `socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes (unix(7)); use a shorter data directory`,
          '',
        );
      }
    }
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await mkdir(this.dockerConfigDir, { recursive: true });
    await writeFile(join(this.dockerConfigDir, 'config.json'), '{}\n');
    await this.writeCliWrapper(docker);

    let child: ChildProcess | undefined;
    const existing = await this.runningPid();
    if (existing === undefined) {
      // A dead dockerd (SIGKILL, OOM) may leave its containerd, shims and container processes behind, and a
      // containerd.pid naming a zombie that a new dockerd would wait for; start from a clean exec root.
      await this.removeLeftovers();
      // The host's /etc/docker/daemon.json must not leak into the private engine.
      const configFile = join(this.root, 'daemon.json');
      await writeFile(configFile, '{}\n');
      const argv = [
        dockerd,
        `--data-root=${this.dataRoot}`,
        `--exec-root=${this.execRoot}`,
        `--pidfile=${this.pidFile}`,
        `--host=${this.host}`,
        `--config-file=${configFile}`,
        '--bridge=none',
        '--iptables=false',
        '--ip-masq=false',
        '--ip-forward=false',
        '--userland-proxy=false',
        `--containerd-namespace=${this.namespace}`,
        `--containerd-plugins-namespace=${this.namespace}-plugins`,
        `--cgroup-parent=${this.namespace}`,
      ];
      const log = openSync(this.logFile, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600);
      try {
        // Detached in its own session so it outlives the runner; a restarted runner adopts it.
        child = spawnLogged(argv, { detached: true, stdio: ['ignore', log, log], logger: this.logger });
      } finally {
        closeSync(log);
      }
      child.unref();
      this.logger.info({ pid: child.pid, dataRoot: this.dataRoot, socket: this.socketPath }, 'starting docker engine');
    } else {
      this.logger.info({ pid: existing }, 'waiting for a starting docker engine');
    }

    let exited: string | undefined;
    child?.once('exit', (code, exitSignal) => (exited = `dockerd exited (code ${code ?? 'none'}, signal ${exitSignal ?? 'none'})`));
    child?.once('error', (error) => (exited = `dockerd could not start: ${error.message}`));
    const deadline = performance.now() + this.startTimeoutMs;
    const started = performance.now();
    for (;;) {
      if (signal?.aborted) {
        if (child?.pid !== undefined) signalProcess(child.pid, 'SIGKILL');
        throw signal.reason as Error;
      }
      if (await ping(this.socketPath)) break;
      if (exited !== undefined) throw new DockerEngineError(exited, await this.logTail());
      if (performance.now() > deadline) {
        if (child?.pid !== undefined) signalProcess(child.pid, 'SIGKILL');
        throw new DockerEngineError(`dockerd did not answer on ${this.socketPath} within ${this.startTimeoutMs} ms`, await this.logTail());
      }
      await sleep(100);
    }
    this.logger.info({ pid: await this.runningPid(), durationMs: Math.round(performance.now() - started) }, 'docker engine started');
  }

  /** Writes the docker CLI wrapper that gives builds the host network (see the class comment). */
  private async writeCliWrapper(docker: string): Promise<void> {
    const quoted = `'${docker.replaceAll("'", `'\\''`)}'`;
    const script = [
      '#!/bin/sh',
      '# Written by Warren (runner/src/builder/docker-engine.ts). The managed engine runs with --bridge=none,',
      '# so image builds use the host network for their RUN steps (and remove failed step containers);',
      '# other commands go to the CLI unchanged.',
      'case "$1" in',
      // --force-rm: the legacy builder otherwise keeps the container of a failed RUN step.
      `  build) shift; exec ${quoted} build --network=host --force-rm "$@" ;;`,
      `  buildx) if [ "$2" = build ]; then shift 2; exec ${quoted} buildx build --network=host "$@"; fi ;;`,
      'esac',
      `exec ${quoted} "$@"`,
      '',
    ].join('\n');
    await mkdir(join(this.root, 'bin'), { recursive: true });
    const current = await readFile(this.dockerCliPath, 'utf8').catch(() => undefined);
    if (current !== script) {
      const temporary = `${this.dockerCliPath}.${process.pid}.tmp`;
      await writeFile(temporary, script);
      await chmod(temporary, 0o755);
      await rename(temporary, this.dockerCliPath);
    }
  }

  private async resolveDocker(): Promise<string> {
    if (this.resolvedDocker !== undefined) return this.resolvedDocker;
    const docker = await findExecutable(this.dockerName);
    if (docker === undefined) throw new DockerNotInstalledError(this.dockerName);
    this.resolvedDocker = docker;
    return docker;
  }

  /** Everything but the data: leftover processes, mounts, cgroups, the exec root, socket and pid file. */
  private async removeLeftovers(): Promise<void> {
    await this.killLeftovers();
    // Not the root itself: an operator may have mounted a disk there.
    await unmountRecursive(this.execRoot, { detach: true, logger: this.logger });
    await unmountRecursive(this.dataRoot, { detach: true, logger: this.logger });
    await removeCgroups(this.namespace, this.logger);
    await rm(this.execRoot, { recursive: true, force: true });
    await rm(this.socketPath, { force: true });
    await rm(this.pidFile, { force: true });
  }

  /**
   * Kills engine processes (dockerd, containerd, containerd-shim*, runc, docker-proxy by program name) whose
   * command line names this engine's directories; other programs that merely mention a path are left alone.
   */
  private async killLeftovers(): Promise<void> {
    const pids: number[] = [];
    for (const entry of await readdir('/proc')) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      const cmdline = await readCmdline(pid);
      const program = cmdline?.[0]?.split('/').at(-1) ?? '';
      if (!/^(dockerd|containerd|containerd-shim.*|runc|docker-proxy)$/.test(program)) continue;
      if (cmdline?.some((arg) => arg.includes(this.execRoot) || arg.includes(this.dataRoot))) pids.push(pid);
    }
    for (const pid of pids) {
      this.logger.warn({ pid }, 'killing leftover docker engine process');
      signalProcess(pid, 'SIGKILL');
    }
    for (const pid of pids) await waitForExit(pid, 5_000);
  }

  private async logTail(): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.split('\n').slice(-20).join('\n');
  }
}

/**
 * Looks `name` up like execvp(3): an absolute or relative path with a slash is checked as is, a bare name
 * in each PATH directory.
 * @returns the absolute path of an executable file, or undefined.
 */
export async function findExecutable(name: string, path: string = process.env.PATH ?? ''): Promise<string | undefined> {
  const candidates = name.includes('/')
    ? [name]
    : path
        .split(delimiter)
        .filter(isAbsolute)
        .map((directory) => join(directory, name));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `GET /_ping` over the engine's unix socket (Docker Engine API); true on a 200 within 2 s. */
function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return text ? text.replace(/\0$/, '').split('\0') : undefined;
  } catch {
    return undefined;
  }
}

function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone (or a zombie: it has exited but its parent has not reaped it yet). */
async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (!isAlive(pid)) return true;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (stat === '' || / Z /.test(stat.slice(stat.lastIndexOf(')')))) return true;
    await sleep(50);
  }
  return !isAlive(pid);
}

/**
 * Kills the processes in, and removes, the cgroup `/<name>` and its children in every mounted hierarchy
 * under /sys/fs/cgroup (v1 controllers or the v2 unified tree), deepest first. Missing cgroups are fine.
 */
async function removeCgroups(name: string, logger: Logger): Promise<void> {
  const root = '/sys/fs/cgroup';
  const hierarchies = (await readdir(root).catch(() => [] as string[])).map((entry) => join(root, entry));
  hierarchies.push(root); // cgroup v2: the unified tree is mounted at the root itself
  for (const hierarchy of hierarchies) {
    const top = join(hierarchy, name);
    const directories = await listCgroupTree(top);
    for (const directory of directories.reverse()) {
      const procs = await readFile(join(directory, 'cgroup.procs'), 'utf8').catch(() => '');
      for (const line of procs.split('\n')) {
        const pid = Number.parseInt(line, 10);
        if (pid > 0) signalProcess(pid, 'SIGKILL');
      }
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          await rmdir(directory);
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
          if (attempt === 49) logger.warn({ cgroup: directory, error: errorMessage(error) }, 'could not remove builder cgroup');
          await sleep(20);
        }
      }
    }
  }
}

/** The cgroup directory `top` and all directories below it, parents before children. */
async function listCgroupTree(top: string): Promise<string[]> {
  const entries = await readdir(top, { withFileTypes: true }).catch(() => undefined);
  if (entries === undefined) return [];
  const result = [top];
  for (const entry of entries) if (entry.isDirectory()) result.push(...(await listCgroupTree(join(top, entry.name))));
  return result;
}
