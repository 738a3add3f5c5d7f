// Progress display while the CLI waits: a live, rewritten line on a TTY, plain lines otherwise.
// Writes to stderr so stdout stays a clean result.
import type { Environment } from '@warren/api';
import { formatBytes } from './output.js';

/** Writes progress lines; on a TTY the last line is rewritten in place. */
export class ProgressLine {
  private lastText = '';
  private live = false;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** Shows `text`; plain (non-TTY) output prints it only when it changed. */
  update(text: string): void {
    if (text === this.lastText) return;
    this.lastText = text;
    if (this.stream.isTTY) {
      const width = this.stream.columns || 100;
      this.stream.write(`\r\u001b[2K${text.slice(0, width - 1)}`);
      this.live = true;
    } else {
      this.stream.write(`${text}\n`);
    }
  }

  /** Ends the live line (moves to a fresh line) so later output is not overwritten. */
  done(): void {
    if (this.live) this.stream.write('\n');
    this.live = false;
  }
}

/** One human line describing where an environment is: phase, then progress or the latest message. */
export function describeEnvironment(environment: Environment): string {
  const status = environment.status;
  const parts = [`${environment.metadata.name}: ${status.phase}`];
  const progress = status.progress;
  if (progress) {
    let detail = progress.step;
    if (progress.message) detail += ` ${progress.message}`;
    if (progress.bytesDone !== undefined) {
      detail += ` ${formatBytes(progress.bytesDone)}`;
      if (progress.bytesTotal)
        detail += `/${formatBytes(progress.bytesTotal)} (${Math.floor((100 * progress.bytesDone) / progress.bytesTotal)}%)`;
    }
    parts.push(detail);
    if (status.message) parts.push(status.message);
  } else if (status.message) {
    parts.push(status.message);
  } else {
    const pending = status.conditions.find((condition) => condition.status !== 'True');
    if (pending) parts.push(`${pending.type}: ${pending.message}`);
  }
  return parts.join(' — ');
}
