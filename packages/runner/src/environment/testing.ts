// Test helpers for the environment reconciler (tests only): an Environment as the server sends it, the next
// generation of one, and a reconciler over the fake backend whose status writes are recorded.
import type { Environment, EnvironmentStatus } from '@warren/api';
import { FakeBackend } from './fake-backend.js';
import { EnvironmentReconciler } from './reconciler.js';

/** A Pending environment `id` (generation 1, desired Running, class `default`) assigned to runner `r1`. */
export function makeEnvironment(id = 'env-1'): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name: id, generation: 1, resourceVersion: '1', createdTime: new Date(0).toISOString(), labels: {}, ownerId: 'u1' },
    spec: {
      desiredPhase: 'Running',
      source: { git: { url: 'https://example.test/repo.git' } },
      devcontainer: {},
      className: 'default',
      ports: [],
      timeouts: { inactivitySeconds: 3600 },
    },
    status: { phase: 'Pending', observedGeneration: 0, conditions: [], ports: [], runnerId: 'r1' },
  };
}

/** `environment` with `spec` merged in and, unless `generationBump` is false, its generation one higher (a spec edit). */
export function withSpec(environment: Environment, spec: Partial<Environment['spec']>, generationBump = true): Environment {
  return {
    ...environment,
    metadata: { ...environment.metadata, generation: environment.metadata.generation + (generationBump ? 1 : 0) },
    spec: { ...environment.spec, ...spec },
  };
}

/** What {@link reconcilerHarness} returns. */
export interface ReconcilerHarness {
  backend: FakeBackend;
  /** Every status written, in order (copies). */
  writes: EnvironmentStatus[];
  reconciler: EnvironmentReconciler;
  /** A signal that is never aborted. */
  signal: AbortSignal;
}

/**
 * A reconciler over `backend` (default a new {@link FakeBackend}) with no progress or announce delays, writing to a
 * store standing in for the server: each status write bumps resourceVersion and is recorded (a copy) in `writes`.
 */
export function reconcilerHarness(backend = new FakeBackend(), options: { announceDelayMs?: number } = {}): ReconcilerHarness {
  const writes: EnvironmentStatus[] = [];
  let version = 1;
  const reconciler = new EnvironmentReconciler({
    backend,
    stopGraceSeconds: 1,
    progressIntervalMs: 0,
    announceDelayMs: options.announceDelayMs ?? 0,
    writeStatus: (environment, status) => {
      writes.push(structuredClone(status));
      version++;
      return Promise.resolve({
        ...environment,
        metadata: { ...environment.metadata, resourceVersion: String(version) },
        status: structuredClone(status),
      });
    },
  });
  const signal = new AbortController().signal;
  return { backend, writes, reconciler, signal };
}
