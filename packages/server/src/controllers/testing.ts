// Fixtures shared by the controller tests.
import {
  EnvironmentSpecSchema,
  EnvironmentStatusSchema,
  RunnerStatusSchema,
  type Environment,
  type EnvironmentClassRequests,
  type EnvironmentSpecInput,
  type Runner,
  type RunnerOverbooking,
  type RunnerResources,
} from '@warren/api';
import type { ResourceStore } from '../storage/index.js';
import type { Clock } from './clock.js';

/** A clock tests move by hand. Starts at the wall clock so createdTime values are comparable. */
export class ManualClock implements Clock {
  private current = Date.now();
  now(): Date {
    return new Date(this.current);
  }
  /** Moves time forward by `seconds`. */
  advance(seconds: number): void {
    this.current += seconds * 1000;
  }
}

/** Polls `check` until it returns a defined value, or fails after `timeoutMs` with the last observed value. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  describe = 'condition',
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${describe}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Creates an EnvironmentClass. */
export function createClass(
  store: ResourceStore,
  name: string,
  cpuMillicores = 1000,
  memoryBytes = 2 ** 30,
  requests?: EnvironmentClassRequests,
) {
  return store.create('EnvironmentClass', {
    name,
    ownerId: '',
    spec: { cpuMillicores, memoryBytes, swapBytes: 0, pids: 4096, ...(requests ? { requests } : {}) },
    status: {},
  });
}

/** Creates a runner with the given phase, capacity and heartbeat time. */
export function createRunner(
  store: ResourceStore,
  name: string,
  options: {
    phase?: 'Active' | 'Inactive';
    capacity?: RunnerResources;
    allocatable?: RunnerResources;
    overbooking?: RunnerOverbooking;
    heartbeat?: Date;
    unschedulable?: boolean;
  } = {},
): Promise<Runner> {
  return store.create('Runner', {
    name,
    ownerId: '',
    spec: { unschedulable: options.unschedulable ?? false },
    status: RunnerStatusSchema.parse({
      phase: options.phase ?? 'Active',
      lastHeartbeatTime: (options.heartbeat ?? new Date()).toISOString(),
      ...(options.capacity ? { capacity: options.capacity } : {}),
      ...(options.allocatable ? { allocatable: options.allocatable } : {}),
      ...(options.overbooking ? { overbooking: options.overbooking } : {}),
    }),
  });
}

/** Creates an environment (desiredPhase Running, class `default` unless overridden). */
export function createEnvironment(
  store: ResourceStore,
  name: string,
  spec: Partial<EnvironmentSpecInput> = {},
  status: Partial<Environment['status']> = {},
): Promise<Environment> {
  return store.create('Environment', {
    name,
    ownerId: 'usr-test',
    spec: EnvironmentSpecSchema.parse({ source: { git: { url: 'https://example.com/repo.git' } }, ...spec }),
    status: EnvironmentStatusSchema.parse({ phase: 'Pending', ...status }),
  });
}
