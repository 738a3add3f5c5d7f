// The one seam through which the runner spawns system tools (runc, ip, nft, git, mount ...).
// Every call is logged with argv, exit code, duration and, on failure, the stderr tail. A child can be started
// inside a given cgroup (Warren's own heavy IO: docs/design/0012-io-limits.md).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { type Logger, WarrenError, silentLogger } from '@warren/base';

/**
 * A cgroup a child joins before its program starts: the `cgroup.procs` file of the group in each hierarchy
 * (v1: one per controller; v2: one). The child and everything it forks run in the group.
 */
export interface ExecCgroup {
  procsFiles: readonly string[];
}

/**
 * The shell script that joins the cgroup: it writes its own pid (`$$`, which `exec` keeps) to each file named
 * before `--`, then replaces itself with the program after `--`. Joining before exec means no byte of the
 * program's IO and none of its children escape the group (moving the pid after spawn would race with both).
 * A file that cannot be written (the group was removed meanwhile) is reported on stderr and the program still runs.
 */
const JOIN_CGROUP_SCRIPT =
  'for f do [ "$f" = -- ] && break; echo $$ 2>/dev/null >"$f" || echo "warren: could not join cgroup $f" >&2; shift; done; shift; exec "$@"';

/** The argv that runs `argv` inside `cgroup` ({@link JOIN_CGROUP_SCRIPT}); `argv` itself without one. */
export function argvInCgroup(argv: readonly string[], cgroup: ExecCgroup | undefined): readonly string[] {
  if (!cgroup || cgroup.procsFiles.length === 0) return argv;
  return ['/bin/sh', '-c', JOIN_CGROUP_SCRIPT, 'warren-join-cgroup', ...cgroup.procsFiles, '--', ...argv];
}

/** Options for {@link exec}. */
export interface ExecOptions {
  /** Bytes written to the child's stdin, then stdin is closed. */
  input?: string | Buffer;
  cwd?: string;
  /** Full environment for the child; defaults to the runner's own environment. */
  env?: NodeJS.ProcessEnv;
  /** Aborting kills the child with SIGKILL and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Kill the child and fail after this many milliseconds. */
  timeoutMs?: number;
  /** Exit codes that count as success (default `[0]`). */
  okCodes?: number[];
  /** Run the command inside this cgroup ({@link argvInCgroup}). */
  cgroup?: ExecCgroup;
  logger?: Logger;
}

/** Result of a finished command: exit code and captured output (UTF-8). */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/**
 * A system tool exited with a code not in `okCodes`, was killed, or could not be started.
 * `stderrTail` holds the last 2 KiB of its stderr, which is what usually names the problem.
 */
export class ExecError extends WarrenError {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderrTail: string,
    readonly stdout: string,
    options?: { cause?: unknown },
  ) {
    const what = exitCode === null ? 'could not run or was killed' : `exited with code ${exitCode}`;
    const tail = stderrTail.trim();
    super('CommandFailed', 500, `${argv[0] ?? '?'} ${what}${tail ? `: ${tail}` : ''}`, options);
  }
}

const STDERR_TAIL_BYTES = 2048;

/**
 * Runs `argv[0]` with arguments `argv[1..]` (no shell) and captures its output.
 * @returns the exit code and output when the code is in `options.okCodes` (default `[0]`).
 * @throws {ExecError} when the command cannot be started, exits with another code, times out or is aborted.
 */
export function exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const logger = options.logger ?? silentLogger;
  const okCodes = options.okCodes ?? [0];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const spawned = argvInCgroup(argv, options.cgroup);
    const child = spawn(spawned[0]!, spawned.slice(1), {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: options.signal,
      timeout: options.timeoutMs,
      killSignal: 'SIGKILL',
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdin.on('error', () => {}); // the child may exit before reading its stdin
    child.stdin.end(options.input);
    let spawnError: Error | undefined;
    child.on('error', (error) => {
      spawnError = error;
    });
    child.on('close', (code) => {
      const durationMs = Math.round(performance.now() - started);
      const out = Buffer.concat(stdout).toString('utf8');
      const err = Buffer.concat(stderr).toString('utf8');
      if (code !== null && okCodes.includes(code) && !spawnError) {
        logger.debug({ argv, code, durationMs, ...(options.cgroup ? { cgroup: options.cgroup.procsFiles[0] } : {}) }, 'command finished');
        resolve({ code, stdout: out, stderr: err, durationMs });
        return;
      }
      const tail = err.length > STDERR_TAIL_BYTES ? err.slice(-STDERR_TAIL_BYTES) : err;
      if (options.signal?.aborted) {
        reject(options.signal.reason as Error);
        return;
      }
      logger.warn({ argv, code, durationMs, stderrTail: tail, error: spawnError?.message }, 'command failed');
      reject(new ExecError(argv, code, tail || (spawnError?.message ?? ''), out, { cause: spawnError }));
    });
  });
}

/**
 * Starts a long-running or streaming child (e.g. `runc exec` attached to a user's terminal) through
 * the same seam: the start and exit are logged with argv, exit code and duration.
 * The caller owns the returned process and its stdio. With `cgroup`, the child runs inside that cgroup
 * ({@link argvInCgroup}); its pid is still the program's.
 */
export function spawnLogged(argv: readonly string[], options: SpawnOptions & { logger?: Logger; cgroup?: ExecCgroup } = {}): ChildProcess {
  const { logger: given, cgroup, ...spawnOptions } = options;
  const logger = given ?? silentLogger;
  const started = performance.now();
  const spawned = argvInCgroup(argv, cgroup);
  const child = spawn(spawned[0]!, spawned.slice(1), spawnOptions);
  child.on('close', (code, signal) => {
    logger.debug({ argv, code, signal, durationMs: Math.round(performance.now() - started) }, 'process exited');
  });
  child.on('error', (error) => logger.warn({ argv, error: error.message }, 'process could not start'));
  return child;
}
