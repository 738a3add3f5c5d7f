// Inactivity timeout: stops environments nobody has used for `spec.timeouts.inactivitySeconds`.
import { setCondition, type Environment, type Kind, type Resource } from '@warren/api';
import { NotFoundError } from '@warren/base';
import type { Controller, ControllerContext } from './controller.js';

/** Condition set on an environment stopped for inactivity. */
export const INACTIVITY_CONDITION = 'StoppedForInactivity';

/**
 * Sets `spec.desiredPhase: Stopped` on a Running environment (status.phase and spec.desiredPhase Running)
 * whose `status.lastActivityTime` (or `startedTime` when absent) is older than `spec.timeouts.inactivitySeconds`
 * (0 = never), with condition `StoppedForInactivity=True, reason=InactivityTimeout` and `status.message`.
 * An environment with neither timestamp is left alone (nothing says how long it has been idle).
 * Source: issue 2, "Controllers"; checked on every change and on each periodic pass.
 */
export class InactivityController implements Controller {
  readonly name = 'inactivity-timeout';

  constructor(private readonly context: ControllerContext) {}

  keysFor(kind: Kind, object: Resource, removed: boolean): string[] {
    return kind === 'Environment' && !removed ? [object.metadata.id] : [];
  }

  allKeys(): string[] {
    return this.context.environments
      .list()
      .filter((environment) => this.idleSeconds(environment) !== undefined)
      .map((environment) => environment.metadata.id);
  }

  async reconcile(id: string): Promise<void> {
    const { environments, store, clock } = this.context;
    const environment = environments.get(id);
    if (!environment || !this.expired(environment)) return;
    try {
      const updated = await store.update('Environment', id, (current) => {
        if (!this.expired(current)) return undefined;
        const idle = Math.floor(this.idleSeconds(current) ?? 0);
        const message = `stopped after ${idle} s without activity (limit ${current.spec.timeouts.inactivitySeconds} s)`;
        return {
          ...current,
          spec: { ...current.spec, desiredPhase: 'Stopped' },
          status: {
            ...current.status,
            message,
            conditions: setCondition(current.status.conditions, INACTIVITY_CONDITION, 'True', 'InactivityTimeout', message, clock.now()),
          },
        };
      });
      environments.apply(updated);
      this.context.logger.info({ environmentId: id }, 'environment stopped for inactivity');
    } catch (error) {
      if (error instanceof NotFoundError) return;
      throw error;
    }
  }

  /** Seconds since the last activity of a running environment with a timeout, else undefined. */
  private idleSeconds(environment: Environment): number | undefined {
    if (environment.status.phase !== 'Running' || environment.spec.desiredPhase !== 'Running') return undefined;
    if (environment.spec.timeouts.inactivitySeconds <= 0) return undefined;
    const since = environment.status.lastActivityTime ?? environment.status.startedTime;
    if (!since) return undefined;
    return (this.context.clock.now().getTime() - Date.parse(since)) / 1000;
  }

  private expired(environment: Environment): boolean {
    const idle = this.idleSeconds(environment);
    return idle !== undefined && idle > environment.spec.timeouts.inactivitySeconds;
  }
}
