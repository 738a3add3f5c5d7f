// Unit tests of the `warren class create|update` flags: quantities, defaults, `none`, and errors naming the flag.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import type { EnvironmentClass } from '@warren/api';
import { classColumns, formatBytes, formatIo, renderTable } from '../output.js';
import { type ClassFlags, addClassFlags, classPatchFromFlags, classSpecFromFlags } from './class-flags.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Parses `argv` the way the CLI does and returns the options commander hands to the action. */
function parse(create: boolean, argv: string[]): ClassFlags {
  let seen: ClassFlags | undefined;
  const command = addClassFlags(new Command('create').argument('<name>'), create)
    .exitOverride()
    .configureOutput({ writeErr: () => undefined })
    .action((_name: string, options: ClassFlags) => {
      seen = options;
    });
  command.parse(['node', 'warren', 'name', ...argv]);
  return seen!;
}

describe('warren class create flags', () => {
  it('takes every field as a flag', () => {
    const flags = parse(true, [
      ...['--cpu', '2', '--cpu-request', '250m', '--memory', '4Gi', '--memory-request', '1Gi', '--swap', '1Gi', '--disk', '20Gi'],
      ...['--pids', '1024', '--io-read-bps', '100Mi/s', '--io-write-bps', '50Mi', '--io-read-iops', '2000', '--io-write-iops', '1000'],
      ...['--display-name', 'Burst'],
    ]);
    expect(classSpecFromFlags(flags)).toEqual({
      displayName: 'Burst',
      cpuMillicores: 2000,
      memoryBytes: 4 * GiB,
      requests: { cpuMillicores: 250, memoryBytes: GiB },
      swapBytes: GiB,
      diskBytes: 20 * GiB,
      pids: 1024,
      io: { readBytesPerSecond: 100 * MiB, writeBytesPerSecond: 50 * MiB, readIops: 2000, writeIops: 1000 },
    });
  });

  it('defaults swap to 0 and pids to 4096 and leaves requests to follow the limits', () => {
    expect(classSpecFromFlags(parse(true, ['--cpu', '500m', '--memory', '512Mi']))).toEqual({
      cpuMillicores: 500,
      memoryBytes: 512 * MiB,
      swapBytes: 0,
      pids: 4096,
    });
  });

  it('rejects bad quantities naming the flag, and a missing limit', () => {
    const cases: [string[], RegExp][] = [
      [['--cpu', 'fast', '--memory', '1Gi'], /--cpu must be millicores/],
      [['--cpu', '1', '--memory', '1Gi', '--cpu-request', 'some'], /--cpu-request must be millicores/],
      [['--cpu', '1', '--memory', 'lots'], /--memory must be a size/],
      [['--cpu', '1', '--memory', '1Gi', '--memory-request', '1 bucket'], /--memory-request must be a size/],
      [['--cpu', '1', '--memory', '1Gi', '--disk', '20 GB please'], /--disk must be a size/],
      [['--cpu', '1', '--memory', '1Gi', '--pids', '1.5'], /--pids must be a whole number/],
      [['--cpu', '1', '--memory', '1Gi', '--io-write-iops', '-3'], /--io-write-iops must be a whole number/],
      [['--cpu', '1', '--memory', '1Gi', '--io-read-bps', 'fast'], /--io-read-bps must be a size/],
      [['--cpu', '1', '--memory', '1Gi', '--disk', 'none'], /--disk must be a size/],
    ];
    for (const [argv, error] of cases) expect(() => classSpecFromFlags(parse(true, argv)), argv.join(' ')).toThrow(error);
    expect(() => parse(true, ['--cpu', '1'])).toThrow(/--memory/);
  });
});

describe('warren class update flags', () => {
  it('patches only the given fields, and "none" removes an optional one', () => {
    expect(classPatchFromFlags(parse(false, ['--cpu-request', '100m', '--disk', 'none', '--io-read-iops', 'none']))).toEqual({
      requests: { cpuMillicores: 100 },
      diskBytes: null,
      io: { readIops: null },
    });
    expect(() => classPatchFromFlags(parse(false, []))).toThrow(/nothing to update/);
  });
});

describe('warren class list', () => {
  it('shows requests beside limits, disk and IO', () => {
    const item = {
      metadata: { name: 'default' },
      spec: { cpuMillicores: 2000, memoryBytes: 4 * GiB, requests: { cpuMillicores: 250, memoryBytes: GiB }, swapBytes: 0, pids: 4096 },
    } as EnvironmentClass;
    const table = renderTable([item], classColumns);
    expect(table).toContain('250m/2000m');
    expect(table).toContain(`${formatBytes(GiB)}/${formatBytes(4 * GiB)}`);
    expect(formatIo({ readBytesPerSecond: 100 * MiB, writeIops: 50 })).toBe(`read ${formatBytes(100 * MiB)}/s, write 50iops`);
    expect(formatIo(undefined)).toBe('-');
  });
});
