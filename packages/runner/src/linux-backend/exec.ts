// Processes in a running environment, by one of four paths: the container's exec agent, the OCI runtime's
// exec, the runtime's exec under a node-pty terminal, or under script(1) when node-pty is unavailable.
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '@warren/base';
import { EnvironmentNotRunningError, type ExecRequest, type ExecSession } from '../environment/index.js';
import {
  type ContainerExecOptions,
  ExecAgentUnavailableError,
  INTERACTIVE_CGROUP,
  execViaAgent,
  loadNodePty,
  spawnLogged,
  spawnUnderPty,
} from '../linux/index.js';
import type { BackendContext } from './context.js';
import { execEnv } from './environment-variables.js';
import { containerId as containerIdOf, environmentPaths } from './paths.js';
import { readState } from './state-file.js';
import { type ContainerUser, cachedUser, resolveUsersCached } from './users.js';

/**
 * Starts `request` in the running environment. Without a terminal it goes through the container's exec agent
 * when its socket accepts (no OCI runtime process and no runtime state lookup: a live agent proves the
 * container runs); otherwise (a container from before the agent, a stopped one, a terminal) through the
 * OCI runtime's exec after checking the container runs. The user comes from the users cached at start while
 * /etc/passwd and /etc/group are unchanged, else from those files.
 * @throws {EnvironmentNotRunningError} when the container is not running.
 * With `interactive` (terminals, SSH sessions, `env exec`; not lifecycle commands), a process started through the
 * OCI runtime runs in the environment's interactive sub-cgroup (docs/design/0015), weighted above its other
 * processes; through the exec agent it stays in the environment's cgroup (the agent does not report pids yet).
 * @throws {InvalidError} reason `UnknownContainerUser` for a user name the image does not have.
 */
export async function execInEnvironment(
  backend: BackendContext,
  environmentId: string,
  request: ExecRequest,
  logger: Logger,
  interactive = false,
): Promise<ExecSession> {
  const runtime = backend.runtime;
  const containerId = containerIdOf(environmentId);
  const paths = environmentPaths(backend.dataDir, environmentId);
  const state = await readState(backend.dataDir, environmentId);
  if (!state?.resolved) throw new EnvironmentNotRunningError(environmentId);
  const { devcontainer, image } = state.resolved;
  const spec = request.user ?? devcontainer.remoteUser;
  const optionsFor = (user: ContainerUser) => ({
    args: request.argv,
    env: execEnv(devcontainer, image.env, user, [...(request.tty ? ['TERM=xterm-256color'] : []), ...(request.env ?? [])]),
    cwd: request.cwd ?? devcontainer.workspaceFolder,
    uid: user.uid,
    gid: user.gid,
    additionalGids: user.additionalGids,
  });
  const viaAgent = async (user: ContainerUser): Promise<ExecSession | undefined> => {
    const options = optionsFor(user);
    try {
      const session = await execViaAgent(
        paths.agentSocket,
        {
          uid: options.uid,
          gid: options.gid,
          additionalGids: options.additionalGids,
          cwd: options.cwd,
          argv: options.args,
          env: options.env,
        },
        { logger },
      );
      logger.debug({ environmentId, user: user.name, via: 'agent' }, 'exec started');
      return session;
    } catch (error) {
      if (!(error instanceof ExecAgentUnavailableError)) throw error;
      logger.debug({ environmentId, errno: error.errno }, 'exec agent unavailable; using the OCI runtime');
      return undefined;
    }
  };

  // A cached user is valid only while the rootfs's user files are unchanged; a stopped environment has no
  // mounted rootfs, so its signature differs and the runtime check below answers first.
  const cached = await cachedUser(paths.rootfs, spec, state.users);
  if (cached && !request.tty) {
    const session = await viaAgent(cached);
    if (session) return session;
  }
  const runtimeState = await runtime.state(containerId);
  if (runtimeState?.status !== 'running') throw new EnvironmentNotRunningError(environmentId);
  const user = cached ?? (await resolveUsersCached(paths.rootfs, [spec], state.users)).users[spec]!;
  if (!cached && !request.tty) {
    const session = await viaAgent(user);
    if (session) return session;
  }
  const subCgroup = interactive ? await interactiveSubCgroup(backend, environmentId, logger) : undefined;
  const options = { ...optionsFor(user), ...(subCgroup ? { subCgroup } : {}) };
  logger.debug({ environmentId, user: user.name, tty: request.tty, via: 'runtime', subCgroup }, 'exec starting');
  if (!request.tty) return sessionOf(await runtime.exec(containerId, options));
  // `runc exec --tty` needs a terminal on its stdin: a resizable node-pty pty when its addon loads.
  const pty = await loadNodePty(logger);
  if (pty) {
    const prepared = await runtime.execCommand(containerId, { ...options, tty: true });
    const size = request.cols && request.rows ? { cols: request.cols, rows: request.rows } : {};
    const session = spawnUnderPty(pty, prepared.argv, { ...size, logger });
    void session.exit.finally(() => prepared.dispose().catch(() => {}));
    return session;
  }
  // Without a pty library, util-linux script(1) gives it
  // one: it runs the command on a new pty and relays our pipes to it. The window size is set once with
  // stty(1) before runc starts (runc copies it to the container's console); later resizes are not
  // propagated (a known limitation until the runner uses a pty library).
  const prepared = await runtime.execCommand(containerId, { ...options, tty: true });
  const size = request.cols && request.rows ? `stty cols ${request.cols} rows ${request.rows} 2>/dev/null; ` : '';
  const command = `${size}exec ${prepared.argv.map(shellQuote).join(' ')}`;
  const child = spawnLogged(['script', '--quiet', '--return', '--command', command, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    logger,
  });
  child.once('close', () => void prepared.dispose().catch(() => {}));
  const session = sessionOf(child);
  // A terminal has one output stream; script's own stderr only carries its errors.
  child.stderr?.on('data', (chunk: Buffer) => logger.warn({ stderr: chunk.toString('utf8').slice(0, 500) }, 'terminal relay error output'));
  const { stderr: _ignored, ...withoutStderr } = session;
  return withoutStderr;
}

/** Wraps a `runc exec` child as an ExecSession; the exit code is the process's (128 + n for signal n). */
function sessionOf(child: ChildProcess): ExecSession {
  const exit = new Promise<number>((resolve) => {
    child.once('error', () => resolve(255));
    child.once('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)));
  });
  return {
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    exit,
    kill: () => {
      // runc forwards SIGTERM to the process; SIGKILL would only kill runc and orphan the process.
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }, 2_000).unref();
      }
    },
  };
}

/**
 * The environment's interactive sub-cgroup as the OCI runtime's exec takes it (made when missing): v1 in the cpu
 * hierarchy only, v2 the leaf. Undefined (logged) when the host cannot have it or making it failed: the process
 * then runs in the environment's cgroup, as before.
 */
async function interactiveSubCgroup(
  backend: BackendContext,
  environmentId: string,
  logger: Logger,
): Promise<ContainerExecOptions['subCgroup']> {
  try {
    const made = await backend.cgroups.ensureInteractiveGroup(environmentId);
    if (!made.group) {
      logger.debug({ environmentId, reason: made.reason }, 'no interactive sub-cgroup');
      return undefined;
    }
    return backend.cgroups.version === 'v1' ? { path: INTERACTIVE_CGROUP, controller: 'cpu' } : { path: INTERACTIVE_CGROUP };
  } catch (error) {
    logger.warn({ environmentId, error: String(error) }, 'interactive sub-cgroup not made');
    return undefined;
  }
}

/** Quotes `text` for /bin/sh (POSIX single quotes). */
function shellQuote(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const numbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return (signal && numbers[signal]) ?? 0;
}
