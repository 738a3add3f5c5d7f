// Unit tests of classCpuTargets: which environments the CPU burst controller manages, and the class cache.
import type { Environment, EnvironmentClassSpec } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { classCpuTargets } from './targets.js';

function environment(id: string, className: string, desiredPhase: 'Running' | 'Stopped' = 'Running'): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name: id, generation: 1, resourceVersion: '1', createdTime: new Date(0).toISOString(), labels: {}, ownerId: 'u1' },
    spec: {
      desiredPhase,
      source: { git: { url: 'https://example.test/repo.git' } },
      devcontainer: {},
      className,
      ports: [],
      timeouts: { inactivitySeconds: 3600 },
    },
    status: { phase: 'Running', observedGeneration: 1, conditions: [], ports: [], runnerId: 'r1' },
  };
}

const small = {
  cpuMillicores: 2000,
  memoryBytes: 2 ** 30,
  swapBytes: 0,
  pids: 1000,
  requests: { cpuMillicores: 250 },
} as EnvironmentClassSpec;
const fixed = { cpuMillicores: 1000, memoryBytes: 2 ** 30, swapBytes: 0, pids: 1000 } as EnvironmentClassSpec;

describe('classCpuTargets', () => {
  it('lists running environments with their class request (default: the limit) and limit', async () => {
    const classes: Record<string, EnvironmentClassSpec> = { small, fixed };
    const targets = classCpuTargets({
      environments: () => [
        environment('e1', 'small'),
        environment('e2', 'fixed'),
        environment('e3', 'small', 'Stopped'),
        environment('e4', 'gone'),
      ],
      environmentClass: (name) => Promise.resolve(classes[name]),
    });
    expect(await targets()).toEqual([
      { name: 'e1', requestMillicores: 250, limitMillicores: 2000 },
      { name: 'e2', requestMillicores: 1000, limitMillicores: 1000 },
    ]);
  });

  it('reuses a lookup within cacheMs and keeps the last answer when a lookup fails', async () => {
    let clock = 0;
    let lookups = 0;
    let fail = false;
    const targets = classCpuTargets({
      environments: () => [environment('e1', 'small')],
      environmentClass: () => {
        lookups += 1;
        return fail ? Promise.reject(new Error('server down')) : Promise.resolve(small);
      },
      cacheMs: 1000,
      now: () => clock,
    });
    await targets();
    await targets();
    expect(lookups).toBe(1);
    clock = 2000;
    fail = true;
    expect(await targets()).toEqual([{ name: 'e1', requestMillicores: 250, limitMillicores: 2000 }]);
    expect(lookups).toBe(2);
  });
});
