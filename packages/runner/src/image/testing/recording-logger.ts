// Test helper: a Logger that records every call, to assert on what the store reported.
import type { Logger } from '@warren/base';

/** One recorded log call. */
export interface LogRecord {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields: Record<string, unknown>;
}

/** A logger whose records (including its children's) land in `records`. */
export function recordingLogger(records: LogRecord[] = [], bindings: Record<string, unknown> = {}): Logger & { records: LogRecord[] } {
  const log = (level: LogRecord['level']) => (fields: Record<string, unknown>, message: string) => {
    records.push({ level, message, fields: { ...bindings, ...fields } });
  };
  return {
    records,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (more) => recordingLogger(records, { ...bindings, ...more }),
  };
}
