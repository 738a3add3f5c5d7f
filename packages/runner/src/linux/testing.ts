// Test helpers for exec sessions (tests only): collect a stream's bytes, run a session to its end and keep its output.
import { Writable } from 'node:stream';
import type { ExecSession } from './exec-session.js';

/** A Writable that keeps what it is given; `text()` is all of it so far, decoded as UTF-8. */
export function collect(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/** What an exec printed and its exit code (128 + signal number when a signal ended it). */
export interface ExecOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Writes `input` (if any) to the session's stdin and ends it, waits for the exit and returns what stdout and stderr
 * carried (stderr is '' for a tty session, which has none). Streams flushed in the exit's tick are included.
 */
export async function outputOf(session: ExecSession, input?: string | Buffer): Promise<ExecOutput> {
  const stdout = collect();
  const stderr = collect();
  session.stdout.pipe(stdout.stream);
  session.stderr?.pipe(stderr.stream);
  session.stdin.end(input);
  const code = await session.exit;
  await new Promise((resolve) => setImmediate(resolve));
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
