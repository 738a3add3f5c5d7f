// Runs a host command (e.g. a prepared `runc exec --tty`) under a pseudo-terminal from node-pty, as an
// ExecSession: one output stream, resizable. runc copies the pty's window size to the container's console
// and again on every SIGWINCH, which the kernel sends when the pty is resized (tty_ioctl(4) TIOCSWINSZ).
import { Readable, Writable } from 'node:stream';
import type { Logger } from '@warren/base';
import type { ExecSession } from './exec-session.js';

type NodePty = typeof import('node-pty');
let loaded: Promise<NodePty | undefined> | undefined;

/**
 * Loads node-pty once. @returns undefined when its native addon cannot be loaded on this host (the caller
 * falls back to script(1)); the reason is logged once.
 */
export function loadNodePty(logger: Logger): Promise<NodePty | undefined> {
  loaded ??= import('node-pty').then(
    (module) => (module as { default?: NodePty }).default ?? module,
    (error: unknown) => {
      logger.warn({ error: String(error) }, 'node-pty cannot be loaded; terminals fall back to script(1) without resize');
      return undefined;
    },
  );
  return loaded;
}

/** Options of {@link spawnUnderPty}. */
export interface PtySpawnOptions {
  /** Columns and rows of the initial window (default 80x24). */
  cols?: number;
  rows?: number;
  /** Environment of the host process (default: this process's). */
  env?: NodeJS.ProcessEnv;
  logger: Logger;
}

/**
 * Spawns `argv` on a new pty.
 * @returns an ExecSession: `stdout` carries the terminal's output (no separate stderr), `stdin` writes to the
 *   terminal, `resize` sets the window size, `kill` sends SIGHUP (a hangup, as when a terminal
 *   closes; runc forwards it) then SIGKILL after 2 s, and
 *   `exit` resolves with the exit code (128 + n for signal n).
 */
export function spawnUnderPty(pty: NodePty, argv: readonly string[], options: PtySpawnOptions): ExecSession {
  const [file, ...args] = argv;
  if (!file) throw new Error('spawnUnderPty needs a command');
  const terminal = pty.spawn(file, args, {
    name: 'xterm-256color',
    cols: options.cols ?? 80,
    rows: options.rows ?? 24,
    env: options.env ?? process.env,
    // Bytes, not strings: a multi-byte character may be split across reads.
    encoding: null,
  });
  options.logger.debug({ argv, pid: terminal.pid }, 'spawned under a pty');
  let exited = false;
  const stdout = new Readable({
    read: () => terminal.resume(),
  });
  terminal.onData((data: string | Buffer) => {
    if (!stdout.push(typeof data === 'string' ? Buffer.from(data) : data)) terminal.pause();
  });
  const exit = new Promise<number>((resolve) => {
    terminal.onExit(({ exitCode, signal }) => {
      exited = true;
      stdout.push(null);
      options.logger.debug({ argv0: file, exitCode, signal }, 'pty process exited');
      resolve(signal ? 128 + signal : exitCode);
    });
  });
  const stdin = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      if (!exited) terminal.write(chunk);
      callback();
    },
  });
  return {
    stdin,
    stdout,
    exit,
    resize: (cols, rows) => {
      if (!exited && cols > 0 && rows > 0) terminal.resize(Math.floor(cols), Math.floor(rows));
    },
    kill: () => {
      if (exited) return;
      terminal.kill('SIGHUP');
      setTimeout(() => {
        if (!exited) terminal.kill('SIGKILL');
      }, 2_000).unref();
    },
  };
}
