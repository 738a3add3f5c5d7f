// runnerMustAct: which Environment changes wake the runner's reconcile.
import { EnvironmentSpecSchema, EnvironmentStatusSchema, setCondition, type Environment, type InformerEvent } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { runnerMustAct } from './environment-predicates.js';

const base: Environment = {
  kind: 'Environment',
  apiVersion: 'v1',
  metadata: {
    id: 'env-1',
    name: 'one',
    generation: 1,
    resourceVersion: '10',
    createdTime: '2026-01-01T00:00:00.000Z',
    labels: {},
    ownerId: 'usr-1',
  },
  spec: EnvironmentSpecSchema.parse({ source: { git: { url: 'https://example.test/repo.git' } } }),
  status: EnvironmentStatusSchema.parse({ phase: 'Running', runnerId: 'run-1', observedGeneration: 1 }),
};

/** An update event from `base` to `base` changed by `change` (with the next resourceVersion). */
function update(change: (environment: Environment) => Environment): InformerEvent<Environment> {
  const changed = change(structuredClone(base));
  return { type: 'Updated', old: base, object: { ...changed, metadata: { ...changed.metadata, resourceVersion: '11' } } };
}

describe('runnerMustAct', () => {
  it("ignores changes to status fields the runner does not act on, and the runner's own status writes", () => {
    const ignored: Record<string, (environment: Environment) => Environment> = {
      keepalive: (each) => ({ ...each, status: { ...each.status, lastActivityTime: '2026-01-01T01:00:00.000Z' } }),
      'scheduler condition': (each) => ({
        ...each,
        status: {
          ...each.status,
          conditions: setCondition(each.status.conditions, 'Scheduled', 'True', 'RunnerAssigned', 'assigned to runner host'),
        },
      }),
      'reconciler write': (each) => ({
        ...each,
        status: {
          ...each.status,
          phase: 'Starting',
          progress: { step: 'image' },
          commit: 'abc',
          startedTime: '2026-01-01T00:00:01.000Z',
          message: 'retrying',
        },
      }),
      'ports watcher write': (each) => ({
        ...each,
        status: { ...each.status, ports: [{ port: 8080, visibility: 'Owner', source: 'Detected' }] },
      }),
      'labels only': (each) => ({ ...each, metadata: { ...each.metadata, labels: { team: 'a' } } }),
    };
    for (const [what, change] of Object.entries(ignored)) expect(runnerMustAct(update(change)), what).toBe(false);
  });

  it('passes spec changes, deletion, placement, and every add, delete and resync', () => {
    const passed: Record<string, (environment: Environment) => Environment> = {
      'desiredPhase (generation)': (each) => ({
        ...each,
        metadata: { ...each.metadata, generation: 2 },
        spec: { ...each.spec, desiredPhase: 'Stopped' },
      }),
      'spec without a generation bump': (each) => ({ ...each, spec: { ...each.spec, ports: [{ port: 3000, visibility: 'Public' }] } }),
      deletionTime: (each) => ({ ...each, metadata: { ...each.metadata, deletionTime: '2026-01-01T02:00:00.000Z' } }),
      runnerId: (each) => ({ ...each, status: { ...each.status, runnerId: 'run-2' } }),
    };
    for (const [what, change] of Object.entries(passed)) expect(runnerMustAct(update(change)), what).toBe(true);
    for (const type of ['Added', 'Deleted', 'Resync'] as const) expect(runnerMustAct({ type, object: base }), type).toBe(true);
  });
});
