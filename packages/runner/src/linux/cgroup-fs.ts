// cgroupfs helpers shared by the v1 and v2 drivers and the CgroupManager facade: where a driver writes
// (the group layout), and tolerant readers of the kernel's flat and keyed files.
import { access, readFile } from 'node:fs/promises';
import type { Logger } from '@warren/base';

/** What a v1 or v2 driver needs to find and limit a group: `<root>[/<hierarchy>]/<parent>/<name>`. */
export interface CgroupLayout {
  /** Where the cgroup filesystems are mounted (`/sys/fs/cgroup`, or a temp dir in tests). */
  root: string;
  /** Parent group of all managed groups (`warren`). */
  parent: string;
  /** Forced swap accounting on/off; undefined = detect from the cgroupfs files. */
  swapAccounting: boolean | undefined;
  logger: Logger;
}

/** Whether `path` exists (access(2) succeeds). */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** The errno code (`ENOENT`, `EBUSY`, ...) of a Node.js system error, if any. */
export function errnoCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

/**
 * Reads a text file.
 * @returns its content, or undefined when it does not exist.
 * @throws the read error for anything but ENOENT.
 */
export async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** Parses a flat keyed file (`key value` per line, e.g. cpu.stat, memory.events); non-integer values are skipped. */
export function keyedValues(text: string | undefined): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^-?\d+$/.test(value)) values.set(key, Number(value));
  }
  return values;
}

/** Parses a single-value file (e.g. memory.current); undefined when absent or not a non-negative integer (e.g. "max"). */
export function singleValue(text: string | undefined): number | undefined {
  const trimmed = text?.trim();
  return trimmed !== undefined && /^\d+$/.test(trimmed) ? Number(trimmed) : undefined;
}

/** Sets `stats[key]` (a field of CgroupStats) only when the host exposed a value. */
export function assignStat<T extends object, K extends keyof T>(stats: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) stats[key] = value;
}
