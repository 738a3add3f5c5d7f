// The flags of `warren class create` and `warren class update`: every EnvironmentClass field, parsed into a spec
// (create) or a JSON merge patch of the spec (update), with an error naming the flag for a bad quantity.
import type { Command } from 'commander';
import type { EnvironmentClassCreate } from '@warren/api';
import { InvalidError } from '@warren/base';
import { parseBytes } from '../output.js';

/** The class flags as commander hands them over: every value a string, absent when not given. */
export interface ClassFlags {
  displayName?: string;
  cpu?: string;
  cpuRequest?: string;
  memory?: string;
  memoryRequest?: string;
  swap?: string;
  disk?: string;
  pids?: string;
  ioReadBps?: string;
  ioWriteBps?: string;
  ioReadIops?: string;
  ioWriteIops?: string;
}

/** Word that removes a field in `warren class update` (a merge-patch null): a request then follows its limit. */
export const UNSET = 'none';

/**
 * Adds the class flags to `command`. `--cpu` and `--memory` are required when `create` is true.
 * @returns the command, for chaining.
 */
export function addClassFlags(command: Command, create: boolean): Command {
  const unset = create ? '' : `; "${UNSET}" removes it`;
  const limit = (flags: string, description: string) =>
    create ? command.requiredOption(flags, description) : command.option(flags, description);
  limit('--cpu <millicores>', 'CPU limit (burst ceiling), e.g. 2000m or 2 (cores)');
  limit('--memory <size>', 'memory limit (hard), e.g. 4Gi');
  return command
    .option('--cpu-request <millicores>', `guaranteed CPU, scheduled by (default: the limit)${unset}`)
    .option('--memory-request <size>', `guaranteed (protected) memory, scheduled by (default: the limit)${unset}`)
    .option('--swap <size>', 'swap on top of memory (default 0)')
    .option('--disk <size>', `limit on the environment's writable state, e.g. 20Gi (default: none)${unset}`)
    .option('--pids <n>', 'process limit (default 4096)')
    .option('--io-read-bps <size>', `read bandwidth limit per second, e.g. 100Mi${unset}`)
    .option('--io-write-bps <size>', `write bandwidth limit per second, e.g. 50Mi${unset}`)
    .option('--io-read-iops <n>', `read operations per second${unset}`)
    .option('--io-write-iops <n>', `write operations per second${unset}`)
    .option('--display-name <text>', 'human name');
}

/** Parses `2000m` (millicores) or `2`/`0.5` (cores). @throws {InvalidError} naming `flag`. */
export function parseMillicores(text: string, flag = '--cpu'): number {
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(text.trim());
  if (!match) throw new InvalidError(`${flag} must be millicores like "2000m" or cores like "2", got "${text}"`);
  return match[2] ? Math.round(Number(match[1])) : Math.round(Number(match[1]) * 1000);
}

/** Parses a size (`4Gi`, `512Mi`, `1G`, `1024`; a trailing `/s` is allowed for rates). @throws {InvalidError} naming `flag`. */
export function parseSize(text: string, flag: string): number {
  const bytes = parseBytes(text.replace(/\/s$/i, ''));
  if (bytes === undefined) throw new InvalidError(`${flag} must be a size like "4Gi" or "512Mi", got "${text}"`);
  return bytes;
}

/** Parses a whole number. @throws {InvalidError} naming `flag`. */
export function parseCount(text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidError(`${flag} must be a whole number, got "${text}"`);
  return Number(text.trim());
}

type Spec = EnvironmentClassCreate['spec'];

/**
 * The spec of `warren class create`: every given flag; `--swap` 0 and `--pids` 4096 by default, no requests (each
 * follows its limit), no disk quota and no IO limits unless given.
 * @throws {InvalidError} naming the flag of a bad quantity, or a missing `--cpu` / `--memory`.
 */
export function classSpecFromFlags(flags: ClassFlags): Spec {
  if (flags.cpu === undefined || flags.memory === undefined) throw new InvalidError('--cpu and --memory are required');
  const patch = classPatchFromFlags(flags, false);
  return { swapBytes: 0, pids: 4096, ...patch, cpuMillicores: patch.cpuMillicores!, memoryBytes: patch.memoryBytes! } as Spec;
}

/** A merge patch of a spec: fields to set, or null to remove (only from `warren class update`). */
export type ClassSpecPatch = { [K in keyof Spec]?: Spec[K] | null } & {
  requests?: Record<string, number | null>;
  io?: Record<string, number | null>;
};

/**
 * The JSON merge patch (RFC 7396) of `warren class update`: only the given flags; with `allowUnset`, `none`
 * removes an optional field (`requests`, `diskBytes`, `io` entries).
 * @throws {InvalidError} naming the flag of a bad quantity, or when no field flag is given.
 */
export function classPatchFromFlags(flags: ClassFlags, allowUnset = true): ClassSpecPatch {
  const patch: ClassSpecPatch = {};
  const optional = <T>(text: string, parse: () => T): T | null => (allowUnset && text.trim() === UNSET ? null : parse());
  if (flags.displayName !== undefined) patch.displayName = flags.displayName;
  if (flags.cpu !== undefined) patch.cpuMillicores = parseMillicores(flags.cpu, '--cpu');
  if (flags.memory !== undefined) patch.memoryBytes = parseSize(flags.memory, '--memory');
  if (flags.swap !== undefined) patch.swapBytes = parseSize(flags.swap, '--swap');
  if (flags.pids !== undefined) patch.pids = parseCount(flags.pids, '--pids');
  const cpuRequest = flags.cpuRequest;
  const memoryRequest = flags.memoryRequest;
  if (flags.disk !== undefined) {
    const disk = flags.disk;
    patch.diskBytes = optional(disk, () => parseSize(disk, '--disk'));
  }
  const requests: Record<string, number | null> = {};
  if (cpuRequest !== undefined) requests.cpuMillicores = optional(cpuRequest, () => parseMillicores(cpuRequest, '--cpu-request'));
  if (memoryRequest !== undefined) requests.memoryBytes = optional(memoryRequest, () => parseSize(memoryRequest, '--memory-request'));
  if (Object.keys(requests).length > 0) patch.requests = requests;
  const io: Record<string, number | null> = {};
  const ioFlags = [
    ['ioReadBps', 'readBytesPerSecond', '--io-read-bps', parseSize],
    ['ioWriteBps', 'writeBytesPerSecond', '--io-write-bps', parseSize],
    ['ioReadIops', 'readIops', '--io-read-iops', parseCount],
    ['ioWriteIops', 'writeIops', '--io-write-iops', parseCount],
  ] as const;
  for (const [key, field, flag, parse] of ioFlags) {
    const text = flags[key];
    if (text !== undefined) io[field] = optional(text, () => parse(text, flag));
  }
  if (Object.keys(io).length > 0) patch.io = io;
  if (allowUnset && Object.keys(patch).length === 0) throw new InvalidError('nothing to update: give at least one field flag');
  return patch;
}
