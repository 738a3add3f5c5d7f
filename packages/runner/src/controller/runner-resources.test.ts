// Unit tests of the capacity and allocatable amounts a runner reports, and the runner.json fields behind them.
import { describe, expect, it } from 'vitest';
import { resolveRunnerConfig } from '../config.js';
import { runnerResources } from './runner-resources.js';

const GiB = 1024 ** 3;

describe('runnerResources', () => {
  it('reserves 250m and 1 GiB for Warren by default and reports overbooking apart', () => {
    const config = resolveRunnerConfig({});
    expect(config.overbooking).toEqual({ cpu: 4, memory: 1 });
    expect(runnerResources(2, 24 * GiB, config)).toEqual({
      capacity: { cpuMillicores: 2000, memoryBytes: 24 * GiB, environments: 50 },
      allocatable: { cpuMillicores: 1750, memoryBytes: 23 * GiB, environments: 50 },
    });
  });

  it('takes reserved and overbooking from runner.json, and never reports a negative allocatable', () => {
    const config = resolveRunnerConfig({ reserved: { cpuMillicores: 4000 }, overbooking: { memory: 1.5 }, maxEnvironments: 8 });
    expect(config.reserved).toEqual({ cpuMillicores: 4000, memoryBytes: GiB });
    expect(config.overbooking).toEqual({ cpu: 4, memory: 1.5 });
    expect(runnerResources(2, 4 * GiB, config).allocatable).toEqual({ cpuMillicores: 0, memoryBytes: 3 * GiB, environments: 8 });
  });

  it('rejects ratios and reservations out of range, naming the field', () => {
    expect(() => resolveRunnerConfig({ overbooking: { cpu: 0 } })).toThrow(/overbooking\.cpu/);
    expect(() => resolveRunnerConfig({ reserved: { memoryBytes: -1 } })).toThrow(/reserved\.memoryBytes/);
  });
});
