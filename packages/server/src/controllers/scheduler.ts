// The scheduler: places each unscheduled environment on an Active runner with room for its class.
import {
  classRequests,
  setCondition,
  type Environment,
  type EnvironmentClass,
  type Kind,
  type Resource,
  type Runner,
  type RunnerResources,
} from '@warren/api';
import { NotFoundError } from '@warren/base';
import type { Controller, ControllerContext } from './controller.js';

/** Condition type and reasons written by the scheduler. */
export const SCHEDULED = 'Scheduled';

/** The outcome of {@link chooseRunner}: a runner, or the reason and message of `Scheduled=False`. */
export type Placement = { runner: Runner } | { runner?: undefined; reason: 'NoRunnerAvailable' | 'ClassNotFound'; message: string };

/**
 * Resources an environment of `environmentClass` takes from a runner: its requests (the guarantee, each
 * defaulting to its limit), never its limits; `environments` = 1. A missing class takes nothing but the slot.
 */
function demandOf(environmentClass: EnvironmentClass | undefined): RunnerResources {
  const requests = environmentClass ? classRequests(environmentClass.spec) : { cpuMillicores: 0, memoryBytes: 0 };
  return { ...requests, environments: 1 };
}

const DIMENSIONS = ['cpuMillicores', 'memoryBytes', 'environments'] as const;

/**
 * What may be placed on `runner` per dimension: `allocatable` (or `capacity` from a runner that reports no
 * allocatable) times the runner's overbooking ratio for CPU and memory (1 when it reports none); the
 * environment count is never overbooked.
 * @returns the room and the ratio of each dimension, or undefined when the runner reports neither amount.
 */
function roomOf(runner: Runner): { room: RunnerResources; base: RunnerResources; ratio: RunnerResources } | undefined {
  const base = runner.status.allocatable ?? runner.status.capacity;
  if (!base) return undefined;
  const ratio = {
    cpuMillicores: runner.status.overbooking?.cpu ?? 1,
    memoryBytes: runner.status.overbooking?.memory ?? 1,
    environments: 1,
  };
  const room = {
    cpuMillicores: Math.floor(base.cpuMillicores * ratio.cpuMillicores),
    memoryBytes: Math.floor(base.memoryBytes * ratio.memoryBytes),
    environments: base.environments,
  };
  return { room, base, ratio };
}

/**
 * Chooses a runner for `environment`. Pure: reads only its arguments.
 * Eligible runners are `status.phase: Active` and not `spec.unschedulable`. A runner's usage is the sum of the
 * requests (docs/design/0010-requests-and-limits.md) of the classes of the environments on it whose
 * `spec.desiredPhase` is Running (stopped ones keep their disk there but no CPU or memory); it has room when
 * usage + demand stays within `(status.allocatable ?? capacity) × status.overbooking` in every dimension
 * (cpuMillicores, memoryBytes; environments is not overbooked). Limits are never counted: they are burst
 * ceilings. A runner that reports neither amount is not limited.
 * The least loaded runner wins: lowest highest-utilisation fraction, then fewest environments, then name.
 * @returns the runner, or `ClassNotFound` / `NoRunnerAvailable` with a message saying why.
 */
export function chooseRunner(
  environment: Environment,
  runners: readonly Runner[],
  environments: readonly Environment[],
  classes: readonly EnvironmentClass[],
): Placement {
  const classByName = new Map(classes.map((each) => [each.metadata.name, each]));
  const environmentClass = classByName.get(environment.spec.className);
  if (!environmentClass) {
    return { reason: 'ClassNotFound', message: `environment class "${environment.spec.className}" does not exist` };
  }
  const eligible = runners.filter((runner) => runner.status.phase === 'Active' && !runner.spec.unschedulable);
  if (eligible.length === 0) {
    const inactive = runners.filter((runner) => runner.status.phase !== 'Active').length;
    const cordoned = runners.length - inactive;
    return {
      reason: 'NoRunnerAvailable',
      message: `no active runner: ${runners.length} registered, ${inactive} inactive, ${cordoned} unschedulable`,
    };
  }
  const usage = new Map<string, RunnerResources>();
  for (const other of environments) {
    const runnerId = other.status.runnerId;
    if (!runnerId || other.spec.desiredPhase !== 'Running' || other.metadata.id === environment.metadata.id) continue;
    const used = usage.get(runnerId) ?? { cpuMillicores: 0, memoryBytes: 0, environments: 0 };
    const demand = demandOf(classByName.get(other.spec.className));
    used.cpuMillicores += demand.cpuMillicores;
    used.memoryBytes += demand.memoryBytes;
    used.environments += demand.environments;
    usage.set(runnerId, used);
  }
  const demand = demandOf(environmentClass);
  const candidates: { runner: Runner; load: number; count: number }[] = [];
  const full: string[] = [];
  for (const runner of eligible) {
    const used = usage.get(runner.metadata.id) ?? { cpuMillicores: 0, memoryBytes: 0, environments: 0 };
    const limits = roomOf(runner);
    if (!limits) {
      candidates.push({ runner, load: 0, count: used.environments });
      continue;
    }
    const { room, base, ratio } = limits;
    const short = DIMENSIONS.filter((dimension) => used[dimension] + demand[dimension] > room[dimension]);
    if (short.length > 0) {
      const shortages = short.map((dimension) => {
        const overbooked = ratio[dimension] === 1 ? '' : ` (${base[dimension]} allocatable × ${ratio[dimension]})`;
        return `${dimension} ${used[dimension]}+${demand[dimension]}>${room[dimension]}${overbooked}`;
      });
      full.push(`${runner.metadata.name} (${shortages.join(', ')})`);
      continue;
    }
    const load = Math.max(...DIMENSIONS.map((dimension) => (room[dimension] === 0 ? 0 : used[dimension] / room[dimension])));
    candidates.push({ runner, load, count: used.environments });
  }
  if (candidates.length === 0) {
    return {
      reason: 'NoRunnerAvailable',
      message: `no runner has room for the requests of class "${environmentClass.metadata.name}": ${full.join('; ')}`,
    };
  }
  candidates.sort((a, b) => a.load - b.load || a.count - b.count || a.runner.metadata.name.localeCompare(b.runner.metadata.name));
  return { runner: candidates[0]!.runner };
}

/**
 * Sets `status.runnerId` and `Scheduled=True, reason=RunnerAssigned` on each environment that has no runner
 * and is not being deleted (phase stays Pending), or `Scheduled=False` with `NoRunnerAvailable` /
 * `ClassNotFound` and a message; those are retried whenever a runner, class or placed environment changes
 * and on every periodic pass. Source: issue 2, "Controllers"; DESIGN.md "Control flow" step 2.
 */
export class SchedulerController implements Controller {
  readonly name = 'scheduler';
  /**
   * Placements written at once. The store commits concurrent writes together (group commit), so a burst of
   * new environments is placed in a few transactions instead of one transaction each.
   */
  readonly concurrency = 32;
  /**
   * Placements whose write is in flight (environment id → runner id). They count against their runner's room
   * until the write is answered and the cache has the result (the Kubernetes scheduler's "assume" step), so
   * concurrent placements never overfill a runner.
   */
  private readonly assumed = new Map<string, string>();

  constructor(private readonly context: ControllerContext) {}

  keysFor(kind: Kind, object: Resource, removed: boolean): string[] {
    if (kind === 'Environment') {
      const environment = object as Environment;
      if (!removed && needsRunner(environment)) return [environment.metadata.id];
      // A placed environment that stops wanting to run (or goes away) frees room for the waiting ones.
      if (environment.status.runnerId && (removed || environment.spec.desiredPhase !== 'Running')) return this.waiting();
      return [];
    }
    return kind === 'Runner' || kind === 'EnvironmentClass' ? this.waiting() : [];
  }

  allKeys(): string[] {
    return this.waiting();
  }

  async reconcile(id: string): Promise<void> {
    const { environments, runners, classes, store, clock } = this.context;
    const environment = environments.get(id);
    if (!environment || !needsRunner(environment)) return;
    const placement = chooseRunner(environment, runners.list(), this.withAssumed(environments.list()), classes.list());
    if (placement.runner) this.assumed.set(id, placement.runner.metadata.id);
    try {
      const updated = await store.update('Environment', id, (current) => {
        if (!needsRunner(current)) return undefined;
        const status = { ...current.status };
        if (placement.runner) {
          status.runnerId = placement.runner.metadata.id;
          status.conditions = setCondition(
            status.conditions,
            SCHEDULED,
            'True',
            'RunnerAssigned',
            `assigned to runner ${placement.runner.metadata.name}`,
            clock.now(),
          );
        } else {
          status.conditions = setCondition(status.conditions, SCHEDULED, 'False', placement.reason, placement.message, clock.now());
        }
        return { ...current, status };
      });
      environments.apply(updated);
      if (placement.runner)
        this.context.logger.info({ environmentId: id, runnerId: placement.runner.metadata.id }, 'environment scheduled');
    } catch (error) {
      if (error instanceof NotFoundError) return;
      throw error;
    } finally {
      this.assumed.delete(id);
    }
  }

  /** `environments` with the placements in flight filled in. */
  private withAssumed(environments: Environment[]): Environment[] {
    if (this.assumed.size === 0) return environments;
    return environments.map((environment) => {
      const runnerId = this.assumed.get(environment.metadata.id);
      return runnerId === undefined || environment.status.runnerId
        ? environment
        : { ...environment, status: { ...environment.status, runnerId } };
    });
  }

  private waiting(): string[] {
    return this.context.environments
      .list()
      .filter(needsRunner)
      .map((environment) => environment.metadata.id);
  }
}

function needsRunner(environment: Environment): boolean {
  return !environment.status.runnerId && environment.spec.desiredPhase !== 'Deleted';
}
