// Terminal sessions of the access API: a login shell on a pty per session, kept alive for a grace period
// after its WebSocket drops so a client can reconnect and get the scrollback replayed (api access.ts).
import { randomUUID } from 'node:crypto';
import { ExecChannel, TERMINAL_TAKEN_OVER_CLOSE_CODE, type TerminalControl } from '@warren/api';
import { type Logger, type Reason, WarrenError } from '@warren/base';
import { type RawData, WebSocket } from 'ws';
import type { EnvironmentBackend, ExecSession } from '../environment/index.js';
import type { AccessClaims } from './auth.js';

/** Default time a detached session stays alive: 5 minutes. */
export const DEFAULT_TERMINAL_GRACE_MS = 5 * 60_000;
/** Default scrollback kept per session for a reconnect: 512 KiB (the API promises at least 256 KiB). */
export const DEFAULT_TERMINAL_SCROLLBACK_BYTES = 512 * 1024;

/**
 * Runs the remote user's login shell (from the container's /etc/passwd, `/bin/sh` when unusable) as a login
 * shell (`-l`, as sshd does per sshd(8) "LOGIN PROCESS"). The lookup runs inside the container so the runner
 * never reads files of a running rootfs for it.
 */
export const LOGIN_SHELL_ARGV = [
  '/bin/sh',
  '-c',
  'shell=$(awk -F: -v u="$(id -un)" \'$1 == u { print $7 }\' /etc/passwd 2>/dev/null); [ -x "$shell" ] || shell=/bin/sh; exec "$shell" -l',
];

/** Frames sent but not yet flushed before the pty is paused (backpressure from a slow client). */
const MAX_PENDING_FRAMES = 32;
/** Replay is sent in frames of this size. */
const REPLAY_FRAME_BYTES = 64 * 1024;

/**
 * The last `capacity` bytes written (older bytes are dropped), kept as the chunks they arrived in.
 */
export class ScrollbackBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(readonly capacity: number) {}

  /** Bytes currently held (≤ capacity). */
  get length(): number {
    return this.size;
  }

  append(chunk: Buffer): void {
    if (chunk.length >= this.capacity) {
      this.chunks = [Buffer.from(chunk.subarray(chunk.length - this.capacity))];
      this.size = this.capacity;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.capacity) {
      const first = this.chunks[0]!;
      const excess = this.size - this.capacity;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
    }
  }

  /** A copy of the held bytes, oldest first. */
  snapshot(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

/** Options of {@link TerminalSessions}. */
export interface TerminalSessionsOptions {
  backend: EnvironmentBackend;
  logger: Logger;
  /** Called on terminal input (activity tracking). */
  onActivity?: (environmentId: string) => void;
  /** Milliseconds a session outlives its dropped socket (default {@link DEFAULT_TERMINAL_GRACE_MS}). */
  graceMs?: number;
  /** Scrollback bytes kept per session (default {@link DEFAULT_TERMINAL_SCROLLBACK_BYTES}). */
  scrollbackBytes?: number;
}

/** Parameters of one terminal connection, from the query string. */
export interface TerminalRequest {
  environmentId: string;
  claims: AccessClaims;
  /** Session to reattach to; absent starts a new one. */
  session?: string;
  cols?: number;
  rows?: number;
}

interface Session {
  id: string;
  environmentId: string;
  userId: string;
  exec: ExecSession;
  scrollback: ScrollbackBuffer;
  socket?: WebSocket;
  /** Frames in flight on `socket`. */
  pending: number;
  paused: boolean;
  graceTimer?: NodeJS.Timeout;
  logger: Logger;
}

/** The session named in a reconnect does not exist (ended, expired, or another user's). HTTP 404. */
export class TerminalSessionNotFoundError extends WarrenError {
  constructor(session: string) {
    super('TerminalSessionNotFound', 404, `terminal session ${session} does not exist or has ended; start a new one`);
  }
}

/** Parses `cols`/`rows` query values. @throws {WarrenError} `BadRequest` (400) when not 1..10000. */
export function parseTerminalSize(value: string | null, name: string): number | undefined {
  if (value === null || value === '') return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1 || number > 10_000)
    throw new WarrenError('BadRequest', 400, `${name} must be a whole number from 1 to 10000, got "${value}"`);
  return number;
}

/**
 * The terminal sessions of one access server. A session belongs to one user and one environment; it ends
 * when its shell exits, when a client sends `terminate`, when it has been detached for `graceMs`, or on
 * {@link TerminalSessions.close}.
 */
export class TerminalSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly graceMs: number;
  private readonly scrollbackBytes: number;

  constructor(private readonly options: TerminalSessionsOptions) {
    this.graceMs = options.graceMs ?? DEFAULT_TERMINAL_GRACE_MS;
    this.scrollbackBytes = options.scrollbackBytes ?? DEFAULT_TERMINAL_SCROLLBACK_BYTES;
  }

  /** Number of live sessions (tests, metrics). */
  get size(): number {
    return this.sessions.size;
  }

  /**
   * Finds the session to reattach to, or starts a new login shell, before the WebSocket upgrade (so that
   * failures are plain HTTP Status responses).
   * @returns the session id; pass it to {@link attach}. A new session is kept for `graceMs` if never attached.
   * @throws {TerminalSessionNotFoundError} for an unknown session or one of another user or environment.
   * @throws {WarrenError} `EnvironmentNotRunning` (409) from the backend.
   */
  async prepare(request: TerminalRequest): Promise<string> {
    if (request.session !== undefined) {
      const existing = this.sessions.get(request.session);
      if (!existing || existing.userId !== request.claims.userId || existing.environmentId !== request.environmentId) {
        throw new TerminalSessionNotFoundError(request.session);
      }
      return existing.id;
    }
    const id = randomUUID();
    const logger = this.options.logger.child({ environmentId: request.environmentId, userId: request.claims.userId, terminalSession: id });
    const exec = await this.options.backend.exec(
      request.environmentId,
      { argv: LOGIN_SHELL_ARGV, tty: true, ...(request.cols && request.rows ? { cols: request.cols, rows: request.rows } : {}) },
      logger,
    );
    const session: Session = {
      id,
      environmentId: request.environmentId,
      userId: request.claims.userId,
      exec,
      scrollback: new ScrollbackBuffer(this.scrollbackBytes),
      pending: 0,
      paused: false,
      logger,
    };
    this.sessions.set(id, session);
    exec.stdin.on('error', () => {});
    exec.stdout.on('data', (chunk: Buffer) => this.output(session, chunk));
    // The exit frame goes after the last output: wait for the output stream to end too.
    const drained = new Promise<void>((resolve) => {
      exec.stdout.once('end', resolve);
      exec.stdout.once('close', resolve);
      exec.stdout.once('error', () => resolve());
    });
    void Promise.all([exec.exit, drained]).then(([code]) => this.ended(session, code));
    this.startGrace(session);
    logger.info({}, 'terminal session started');
    return id;
  }

  /**
   * Attaches an upgraded socket to a prepared session: sends the `session` frame and the scrollback (when
   * resuming), then streams live output and takes input and resizes. A previously attached socket is closed
   * with {@link TERMINAL_TAKEN_OVER_CLOSE_CODE}.
   */
  attach(websocket: WebSocket, sessionId: string, request: TerminalRequest): void {
    const session = this.sessions.get(sessionId);
    if (!session) {
      sendControl(websocket, { type: 'error', ...statusFields(new TerminalSessionNotFoundError(sessionId)) });
      websocket.close(1011, 'TerminalSessionNotFound');
      return;
    }
    if (session.graceTimer) clearTimeout(session.graceTimer);
    session.graceTimer = undefined;
    const previous = session.socket;
    const resumed = request.session !== undefined;
    this.detach(session, false);
    if (previous && previous.readyState === WebSocket.OPEN) previous.close(TERMINAL_TAKEN_OVER_CLOSE_CODE, 'terminal attached elsewhere');
    if (resumed && request.cols && request.rows) session.exec.resize?.(request.cols, request.rows);

    // Snapshot and attach in one turn of the event loop: no output is lost or sent twice in between.
    const replay = resumed ? session.scrollback.snapshot() : Buffer.alloc(0);
    sendControl(websocket, { type: 'session', session: session.id, resumed, replayBytes: replay.length });
    for (let offset = 0; offset < replay.length; offset += REPLAY_FRAME_BYTES) {
      websocket.send(Buffer.concat([Buffer.of(ExecChannel.stdout), replay.subarray(offset, offset + REPLAY_FRAME_BYTES)]));
    }
    session.socket = websocket;
    session.logger.debug({ resumed, replayBytes: replay.length }, 'terminal attached');

    websocket.on('message', (data: RawData, isBinary: boolean) => {
      if (session.socket !== websocket) return;
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        if (bytes[0] !== ExecChannel.stdin || bytes.length < 2) return;
        session.exec.stdin.write(bytes.subarray(1));
        this.options.onActivity?.(session.environmentId);
        return;
      }
      let control: Partial<{ type: string; cols: unknown; rows: unknown }>;
      try {
        control = JSON.parse(bytes.toString('utf8')) as typeof control;
      } catch {
        return;
      }
      if (control.type === 'resize' && typeof control.cols === 'number' && typeof control.rows === 'number')
        session.exec.resize?.(control.cols, control.rows);
      else if (control.type === 'terminate') session.exec.kill();
    });
    websocket.on('close', () => {
      if (session.socket !== websocket) return;
      this.detach(session, true);
    });
    websocket.on('error', (error) => session.logger.debug({ error: error.message }, 'terminal socket error'));
  }

  /** Kills every session (their shells get SIGTERM, then SIGKILL). */
  close(): void {
    for (const session of this.sessions.values()) {
      if (session.graceTimer) clearTimeout(session.graceTimer);
      session.socket?.terminate();
      session.exec.kill();
    }
    this.sessions.clear();
  }

  private output(session: Session, chunk: Buffer): void {
    session.scrollback.append(chunk);
    const socket = session.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    session.pending++;
    if (session.pending >= MAX_PENDING_FRAMES && !session.paused) {
      session.paused = true;
      session.exec.stdout.pause();
    }
    socket.send(Buffer.concat([Buffer.of(ExecChannel.stdout), chunk]), () => {
      if (session.socket !== socket) return;
      session.pending--;
      if (session.paused && session.pending < MAX_PENDING_FRAMES / 2) {
        session.paused = false;
        session.exec.stdout.resume();
      }
    });
  }

  /** Forgets the attached socket; output goes only to the scrollback until the next attach. */
  private detach(session: Session, startGrace: boolean): void {
    session.socket = undefined;
    session.pending = 0;
    if (session.paused) {
      session.paused = false;
      session.exec.stdout.resume();
    }
    if (startGrace && this.sessions.has(session.id)) {
      session.logger.debug({ graceMs: this.graceMs }, 'terminal detached');
      this.startGrace(session);
    }
  }

  private startGrace(session: Session): void {
    if (session.graceTimer) clearTimeout(session.graceTimer);
    session.graceTimer = setTimeout(() => {
      session.logger.info({ graceMs: this.graceMs }, 'terminal session expired while detached');
      session.exec.kill();
    }, this.graceMs);
    session.graceTimer.unref();
  }

  private ended(session: Session, code: number): void {
    if (session.graceTimer) clearTimeout(session.graceTimer);
    this.sessions.delete(session.id);
    session.logger.info({ code }, 'terminal session ended');
    const socket = session.socket;
    session.socket = undefined;
    if (socket && socket.readyState === WebSocket.OPEN) {
      sendControl(socket, { type: 'exit', code });
      socket.close(1000);
    }
  }
}

function sendControl(websocket: WebSocket, control: TerminalControl): void {
  if (websocket.readyState === WebSocket.OPEN) websocket.send(JSON.stringify(control));
}

function statusFields(error: WarrenError): { reason: Reason; message: string } {
  return { reason: error.reason, message: error.message };
}
