// What every command handler gets from main.ts: the global options and a lazily created API client. Kept apart
// from main.ts so the commands do not import the module that imports them.
import type { WarrenClient } from '@warren/api';
import type { OutputFormat } from './output.js';

/** Global options every command can read through {@link CommandContext}. */
export interface GlobalOptions {
  server?: string;
  token?: string;
  output: OutputFormat;
}

/** What command handlers get: the parsed global options and a lazily created API client. */
export interface CommandContext {
  options(): GlobalOptions;
  client(): Promise<WarrenClient>;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}
