// The environment container's init + exec agent (exec-agent.c): compiles and caches the static binary, builds
// the init's argv, and execs processes through the agent's unix socket instead of `runc exec` (a few ms
// instead of ~50 ms). Protocol: see the header comment of exec-agent.c and docs/design/0005-exec-agent.md.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { type Socket, createConnection } from 'node:net';
import { dirname } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type ErrorCause, InvalidError, type Logger, WarrenError, silentLogger } from '@warren/base';
import type { ExecSession } from './exec-session.js';
import { compileCached, locateCSource } from './c-program.js';

/** Directory inside the container where the environment's agent directory is bind-mounted (on runc's /dev tmpfs). */
export const AGENT_DIR_IN_CONTAINER = '/dev/.warren';
/** Where the shared init binary is bind-mounted (read-only) inside the container. */
export const INIT_PATH_IN_CONTAINER = `${AGENT_DIR_IN_CONTAINER}/init`;
/** File name of the agent's socket in the agent directory. */
export const AGENT_SOCKET_NAME = 'exec.sock';

const MAGIC = Buffer.from('WXA1', 'latin1');
const ID_BYTES = 16;
/** Largest request the agent accepts (exec-agent.c MAX_REQUEST). */
export const MAX_AGENT_REQUEST_BYTES = 4 * 1024 * 1024;
const MAX_GROUPS = 65_536;
const MAX_MESSAGE_BYTES = 4096;
/** Linux O_PATH (open(2)); Node's fs.constants lacks it. */
const O_PATH = 0o10000000;
const O_NOFOLLOW = 0o400000;

/** Connection kinds of the protocol (the fifth header byte). */
export const AgentConnectionKind = { control: 0, stdin: 1, stdout: 2, stderr: 3 } as const;
/** One of {@link AgentConnectionKind}'s values. */
export type AgentConnectionKind = (typeof AgentConnectionKind)[keyof typeof AgentConnectionKind];

/** The agent's C source could not be found or compiled (needs `cc` and a static libc: apt `gcc`, `libc6-dev`). */
export class ExecAgentBuildError extends WarrenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ExecAgentUnavailable', 500, message, options);
  }
}

/**
 * The agent socket cannot be used: missing (container started without the agent or stopped), not a socket
 * (a symlink or other file put there from inside the container is refused), or nobody listening. Callers fall
 * back to the OCI runtime's exec. `errno` is the errno name (`ENOENT`, `ECONNREFUSED`, `ENOTSOCK`, `ELOOP` ...).
 */
export class ExecAgentUnavailableError extends WarrenError {
  constructor(
    readonly socketPath: string,
    readonly errno: string,
    options?: { cause?: unknown },
  ) {
    super('ExecAgentUnavailable', 503, `exec agent at ${socketPath} is not available (${errno})`, options);
  }
}

/**
 * Locates exec-agent.c next to this module: `src/linux/` from sources, `../../src/linux/` from `dist/linux/`.
 * @param moduleDir the directory of the running module (a parameter for tests).
 * @throws {ExecAgentBuildError} when neither exists.
 */
export function execAgentSourcePath(moduleDir: string = dirname(fileURLToPath(import.meta.url))): string {
  const { found, candidates } = locateCSource('exec-agent.c', moduleDir);
  if (!found) throw new ExecAgentBuildError(`exec-agent.c not found (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * Returns the path of the compiled agent, compiling it with `cc -static -O2` on first use ({@link compileCached};
 * static, so it runs in images without a C library): `<cacheDir>/warren-init-<12 hex of the flags' and source's
 * hash>`, mode 0755, root-owned (containers mount it read-only and cannot write it).
 * @param cacheDir e.g. `<dataDir>/bin`; created if missing.
 * @throws {ExecAgentBuildError} when the source is missing or the compiler fails (cause: the ExecError).
 */
export async function ensureExecAgent(cacheDir: string, options: { logger?: Logger } = {}): Promise<string> {
  const sourcePath = execAgentSourcePath();
  try {
    return await compileCached({
      sourcePath,
      cacheDir,
      name: 'warren-init',
      flags: ['-static', '-O2'],
      ...(options.logger ? { logger: options.logger } : {}),
    });
  } catch (error) {
    throw new ExecAgentBuildError(`compiling ${sourcePath} failed`, { cause: error });
  }
}

/** The identity the init runs the image command as (the container user). */
export interface InitUser {
  uid: number;
  gid: number;
  additionalGids?: readonly number[];
}

/**
 * The container process's argv: the init at {@link INIT_PATH_IN_CONTAINER}, then the command to run under it as
 * `user`. Without a command the init only reaps and serves execs (it exits 0 on SIGTERM/SIGINT).
 * @param command the image's entrypoint + cmd (overrideCommand false), or empty.
 * @returns e.g. `['/dev/.warren/init', '--uid', '1000', '--gid', '1000', '--', 'node', 'server.js']`.
 */
export function initArgs(command: readonly string[], user?: InitUser): string[] {
  const identity = user
    ? [
        '--uid',
        String(user.uid),
        '--gid',
        String(user.gid),
        ...(user.additionalGids?.length ? ['--groups', user.additionalGids.join(',')] : []),
      ]
    : [];
  return [INIT_PATH_IN_CONTAINER, ...identity, ...(command.length > 0 ? ['--', ...command] : [])];
}

/** One process for the agent to start. */
export interface AgentExecRequest {
  uid: number;
  gid: number;
  /** Supplementary groups (setgroups(2)); the list replaces the agent's own. */
  additionalGids: readonly number[];
  /** Absolute working directory inside the container. */
  cwd: string;
  /** Command and arguments; `argv[0]` is looked up in the env's PATH (execvp(3)). */
  argv: readonly string[];
  /** The complete environment, `NAME=value` entries. */
  env: readonly string[];
}

function isId(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < 0xffff_ffff;
}

/**
 * Encodes a request for the control connection (exec-agent.c header comment): big-endian u32 `uid`, `gid`,
 * `ngroups`, the groups, then the strings `cwd`, `argc` + argv, `envc` + env, each a u32 length and its bytes.
 * @returns the request without its length prefix.
 * @throws {InvalidError} reason `InvalidExecRequest` for ids outside [0, 2^32-2], more than 65536 groups, a
 *   relative cwd, an empty argv or command, a NUL byte in any string, or more than 4 MiB in all.
 */
export function encodeExecRequest(request: AgentExecRequest): Buffer {
  const causes: ErrorCause[] = [];
  if (!isId(request.uid)) causes.push({ field: 'uid', message: 'must be an integer in [0, 4294967294]' });
  if (!isId(request.gid)) causes.push({ field: 'gid', message: 'must be an integer in [0, 4294967294]' });
  if (request.additionalGids.length > MAX_GROUPS) causes.push({ field: 'additionalGids', message: `at most ${MAX_GROUPS} groups` });
  request.additionalGids.forEach((gid, index) => {
    if (!isId(gid)) causes.push({ field: `additionalGids[${index}]`, message: 'must be an integer in [0, 4294967294]' });
  });
  if (!request.cwd.startsWith('/')) causes.push({ field: 'cwd', message: 'must be an absolute path' });
  if (request.argv.length === 0 || request.argv[0] === '') causes.push({ field: 'argv', message: 'must name a command' });
  const strings: Array<[string, string]> = [
    ['cwd', request.cwd],
    ...request.argv.map((value, index): [string, string] => [`argv[${index}]`, value]),
    ...request.env.map((value, index): [string, string] => [`env[${index}]`, value]),
  ];
  for (const [field, value] of strings) {
    if (value.includes('\0')) causes.push({ field, message: 'must not contain a NUL character' });
  }
  if (causes.length > 0) throw new InvalidError('invalid exec request', causes, 'InvalidExecRequest');

  const parts: Buffer[] = [];
  const u32 = (value: number) => {
    const buffer = Buffer.allocUnsafe(4);
    buffer.writeUInt32BE(value);
    parts.push(buffer);
  };
  const string = (value: string) => {
    const bytes = Buffer.from(value, 'utf8');
    u32(bytes.length);
    parts.push(bytes);
  };
  u32(request.uid);
  u32(request.gid);
  u32(request.additionalGids.length);
  for (const gid of request.additionalGids) u32(gid);
  string(request.cwd);
  u32(request.argv.length);
  for (const argument of request.argv) string(argument);
  u32(request.env.length);
  for (const entry of request.env) string(entry);
  const encoded = Buffer.concat(parts);
  if (encoded.length > MAX_AGENT_REQUEST_BYTES) {
    throw new InvalidError(
      'invalid exec request',
      [{ field: 'argv', message: `the request is larger than ${MAX_AGENT_REQUEST_BYTES} bytes` }],
      'InvalidExecRequest',
    );
  }
  return encoded;
}

/**
 * Decodes what {@link encodeExecRequest} produced (the agent's parser, in TypeScript; for tests and tools).
 * @throws {InvalidError} reason `InvalidExecRequest` when the bytes are truncated, have trailing bytes or
 *   counts that cannot fit.
 */
export function decodeExecRequest(bytes: Buffer): AgentExecRequest {
  let offset = 0;
  const fail = (message: string): never => {
    throw new InvalidError(`invalid exec request: ${message}`, [{ field: 'request', message }], 'InvalidExecRequest');
  };
  const u32 = (): number => {
    if (bytes.length - offset < 4) fail(`truncated at byte ${offset}`);
    const value = bytes.readUInt32BE(offset);
    offset += 4;
    return value;
  };
  const count = (): number => {
    const value = u32();
    if (value > (bytes.length - offset) / 4) fail(`count ${value} at byte ${offset - 4} cannot fit`);
    return value;
  };
  const string = (): string => {
    const length = u32();
    if (bytes.length - offset < length) fail(`string of ${length} bytes truncated at byte ${offset}`);
    const value = bytes.toString('utf8', offset, offset + length);
    offset += length;
    return value;
  };
  const uid = u32();
  const gid = u32();
  const additionalGids = Array.from({ length: count() }, () => u32());
  const cwd = string();
  const argv = Array.from({ length: count() }, () => string());
  const env = Array.from({ length: count() }, () => string());
  if (offset !== bytes.length) fail(`${bytes.length - offset} trailing bytes`);
  return { uid, gid, additionalGids, cwd, argv, env };
}

/** The 21-byte header that opens each connection of one exec: magic, kind, id. */
export function connectionHeader(kind: AgentConnectionKind, id: Buffer): Buffer {
  if (id.length !== ID_BYTES) throw new Error(`exec id must be ${ID_BYTES} bytes`);
  return Buffer.concat([MAGIC, Buffer.of(kind), id]);
}

/** Options of {@link execViaAgent}. */
export interface AgentExecOptions {
  logger?: Logger;
  /** Time between the SIGTERM and the SIGKILL of {@link ExecSession.kill}, ms (default 2000). */
  killGraceMs?: number;
}

/** An {@link ExecSession} through the agent, which can also send any signal to the process group. */
export interface AgentExecSession extends ExecSession {
  stderr: NonNullable<ExecSession['stderr']>;
  /** Sends signal `signal` (1..64, signal(7) numbering) to the exec's process group; ignored once it exited. */
  signal(signal: number): void;
}

/** Opens `socketPath` without following a final symlink and proves it is a socket; @returns the O_PATH handle. */
async function openSocketPath(socketPath: string) {
  let handle;
  try {
    handle = await open(socketPath, O_PATH | O_NOFOLLOW);
  } catch (error) {
    throw new ExecAgentUnavailableError(socketPath, (error as NodeJS.ErrnoException).code ?? 'EIO', { cause: error });
  }
  try {
    const info = await handle.stat();
    if (!info.isSocket()) throw new ExecAgentUnavailableError(socketPath, info.isSymbolicLink() ? 'ELOOP' : 'ENOTSOCK');
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

function connect(path: string, socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    const onError = (error: NodeJS.ErrnoException) => {
      socket.destroy();
      reject(new ExecAgentUnavailableError(socketPath, error.code ?? 'EIO', { cause: error }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/** A promise settled when `socket` has closed (for any reason). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.closed) resolve();
    else socket.once('close', () => resolve());
  });
}

/**
 * Starts `request` through the agent listening at `socketPath` (an absolute host path of any length: the
 * socket is opened with O_PATH|O_NOFOLLOW and connected through `/proc/self/fd/N`, which both avoids the
 * 108-byte sun_path limit of unix(7) and refuses a symlink planted in the container-owned agent directory).
 * @returns once the four connections are up (the process may still fail to start): `stdin` (end() gives the
 *   process EOF), `stdout` and `stderr` (a failure to start, e.g. an unknown command, appends
 *   `warren: exec <cmd>: No such file or directory` to stderr), `exit` resolving after the status arrived and
 *   stdout and stderr have closed with the process's code (128 + n for signal n; 127 for a command that was not
 *   found, 126 when it could not be executed or the cwd/user could not be set, 255 when the agent went away or
 *   rejected the request), `kill()` (SIGTERM to the process group, SIGKILL after `killGraceMs`) and `signal(n)`.
 *   Closing the control connection (e.g. this process dying) makes the agent SIGKILL the process group.
 * @throws {ExecAgentUnavailableError} when the socket is missing, not a socket or refuses connections.
 * @throws {InvalidError} reason `InvalidExecRequest` (see {@link encodeExecRequest}).
 */
export async function execViaAgent(
  socketPath: string,
  request: AgentExecRequest,
  options: AgentExecOptions = {},
): Promise<AgentExecSession> {
  const logger = options.logger ?? silentLogger;
  const payload = encodeExecRequest(request);
  const handle = await openSocketPath(socketPath);
  let sockets: Socket[];
  try {
    const path = `/proc/self/fd/${handle.fd}`;
    const results = await Promise.allSettled([0, 1, 2, 3].map(() => connect(path, socketPath)));
    const failure = results.find((result) => result.status === 'rejected');
    sockets = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    if (failure) {
      for (const socket of sockets) socket.destroy();
      throw failure.reason;
    }
  } finally {
    await handle.close();
  }
  const [control, stdin, stdout, stderrSocket] = sockets as [Socket, Socket, Socket, Socket];
  const id = randomBytes(ID_BYTES);
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(payload.length);
  control.write(Buffer.concat([connectionHeader(AgentConnectionKind.control, id), length, payload]));
  stdin.write(connectionHeader(AgentConnectionKind.stdin, id));
  stdout.write(connectionHeader(AgentConnectionKind.stdout, id));
  stderrSocket.write(connectionHeader(AgentConnectionKind.stderr, id));
  // Nobody else listens for errors on these: a write after the process exited (EPIPE) must not crash the runner.
  for (const socket of sockets) socket.on('error', (error) => logger.debug({ error: error.message }, 'exec agent connection error'));
  // The process never writes to its stdin connection; reading it lets the socket see EOF and close.
  stdin.resume();

  let outcome: { code: number; message?: string } | undefined;
  const result = new Promise<{ code: number; message?: string }>((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (value: { code: number; message?: string }) => {
      if (outcome) return;
      outcome = value;
      control.destroy();
      resolve(value);
    };
    control.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const type = buffered[0];
      if (type === 0x58 /* X */ && buffered.length >= 5) finish({ code: buffered.readInt32BE(1) });
      else if (type === 0x46 /* F */ && buffered.length >= 9) {
        const size = buffered.readUInt32BE(5);
        if (size > MAX_MESSAGE_BYTES) finish({ code: 255, message: 'exec agent sent an oversized message' });
        else if (buffered.length >= 9 + size) finish({ code: buffered.readInt32BE(1), message: buffered.toString('utf8', 9, 9 + size) });
      } else if (type !== 0x58 && type !== 0x46) finish({ code: 255, message: 'exec agent sent an unknown message' });
    });
    control.once('close', () => {
      if (!outcome) logger.debug({ argv0: request.argv[0] }, 'exec agent closed the control connection without a status');
      finish({ code: 255 });
    });
  });

  // stderr is relayed so that a failure to start can be reported on it, after the process's own output.
  // (exit waits for the connections, not for the relay to be read: like a child process's 'close', it needs the
  // caller to consume output that does not fit the buffers, but not to read an empty stream.)
  const stderr = new PassThrough();
  stderrSocket.pipe(stderr, { end: false });
  const exit = Promise.all([result, closed(stdout), closed(stderrSocket)]).then(([{ code, message }]) => {
    if (message) {
      logger.debug({ argv0: request.argv[0], message }, 'exec did not start');
      stderr.write(`warren: ${message}\n`);
    }
    stderr.end();
    return code;
  });

  const signal = (number: number) => {
    if (outcome || control.destroyed || !Number.isInteger(number) || number < 1 || number > 64) return;
    const message = Buffer.alloc(5);
    message[0] = 0x4b; // K
    message.writeUInt32BE(number, 1);
    control.write(message);
  };
  return {
    stdin,
    stdout,
    stderr,
    exit,
    signal,
    kill: () => {
      if (outcome) return;
      signal(15);
      setTimeout(() => signal(9), options.killGraceMs ?? 2_000).unref();
    },
  };
}
