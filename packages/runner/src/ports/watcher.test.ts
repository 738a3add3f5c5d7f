// The ports watcher against fakes: wanted ports from spec, forwardPorts and detection; writes only on change;
// Detected entries removed once the environment stops; a conflicting status write is re-applied.
import type { Environment, EnvironmentStatus } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { PortsWatcher, wantedPorts } from './watcher.js';

function environment(status: Partial<EnvironmentStatus> = {}, specPorts: Environment['spec']['ports'] = []): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: {
      id: 'env-1',
      name: 'hello',
      generation: 1,
      resourceVersion: '5',
      createdTime: new Date(0).toISOString(),
      labels: {},
      ownerId: 'usr-a',
    },
    spec: {
      desiredPhase: 'Running',
      source: { git: { url: 'https://example.com/r.git' } },
      devcontainer: {},
      className: 'default',
      ports: specPorts,
      timeouts: { inactivitySeconds: 0 },
    },
    status: { phase: 'Running', observedGeneration: 1, conditions: [], ports: [], ...status },
  };
}

describe('wantedPorts', () => {
  it('merges Devcontainer entries, spec ports and detected ports, with visibility from the spec and URLs', () => {
    const env = environment({ ports: [{ port: 3000, visibility: 'Owner', source: 'Devcontainer', label: 'web' }] }, [
      { port: 3000, visibility: 'Public' },
      { port: 9000, visibility: 'Owner' },
    ]);
    expect(wantedPorts(env, [3000, 8080], (port) => `http://${port}-hello.localhost:7082/`)).toEqual([
      { port: 3000, visibility: 'Public', source: 'Devcontainer', label: 'web', url: 'http://3000-hello.localhost:7082/' },
      { port: 8080, visibility: 'Owner', source: 'Detected', url: 'http://8080-hello.localhost:7082/' },
      { port: 9000, visibility: 'Owner', source: 'Spec', url: 'http://9000-hello.localhost:7082/' },
    ]);
  });
});

describe('PortsWatcher', () => {
  it('writes detected ports once, restores them after another writer dropped them, and removes them after a stop', async () => {
    let current = environment();
    let listening = [8080];
    const writes: EnvironmentStatus['ports'][] = [];
    const watcher = new PortsWatcher({
      environments: () => [current],
      network: () => Promise.resolve(current.status.phase === 'Running' ? { address: '10.88.0.2', pid: 1 } : undefined),
      listPorts: () => Promise.resolve(listening),
      patchStatus: async (_id, change) => {
        const next = change(current.status);
        if (next) {
          writes.push(next.ports);
          current = { ...current, status: next };
        }
        return Promise.resolve(undefined);
      },
    });
    await watcher.scan();
    await watcher.scan();
    expect(writes).toEqual([[{ port: 8080, visibility: 'Owner', source: 'Detected' }]]);

    // The reconciler wrote a whole status without our entry: the next scan puts it back.
    current = { ...current, status: { ...current.status, ports: [] } };
    listening = [8080, 9090];
    await watcher.scan();
    expect(writes.at(-1)?.map((port) => port.port)).toEqual([8080, 9090]);

    current = { ...current, status: { ...current.status, phase: 'Stopped' } };
    await watcher.scan();
    expect(writes.at(-1)).toEqual([]);
    expect(writes).toHaveLength(3);
  });
});
