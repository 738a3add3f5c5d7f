// The handle of one running exec (through the exec agent, the OCI runtime or a pty): streams, exit code, signals.
import type { Readable, Writable } from 'node:stream';

/** A running exec: the caller owns the streams and must await `exit`. */
export interface ExecSession {
  stdin: Writable;
  stdout: Readable;
  /** Absent for tty sessions, where stderr is merged into stdout by the terminal. */
  stderr?: Readable;
  /** Resolves with the exit code (128 + signal number when killed by a signal). */
  exit: Promise<number>;
  resize?(cols: number, rows: number): void;
  /** Ends the exec'd process: SIGTERM, then SIGKILL when it is still running 2 s later. */
  kill(): void;
  /**
   * Sends signal `signal` (1..64, signal(7) numbering) to the exec's process group; absent where the exec path
   * cannot deliver arbitrary signals (the OCI runtime's exec), where callers fall back to {@link kill}.
   */
  signal?(signal: number): void;
}
