// The logger interface every package depends on; the server, runner and CLI pass a pino
// instance (which satisfies it), tests pass `silentLogger`.

/** Structured logger: constant message, data in `fields`. Matches pino's `(obj, msg)` call shape. */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
  /** Returns a logger whose records all carry `bindings` (e.g. `{component, environmentId}`). */
  child(bindings: Record<string, unknown>): Logger;
}

/** A logger that drops everything; for tests and quiet CLI commands. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
