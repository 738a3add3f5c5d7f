// Runner liveness: a runner whose heartbeats stopped is marked Inactive so nothing new is scheduled to it.
import { setCondition, type Kind, type Resource, type Runner } from '@warren/api';
import { NotFoundError } from '@warren/base';
import type { Controller, ControllerContext } from './controller.js';

/** Condition written on a runner whose heartbeat is overdue. */
export const RUNNER_READY = 'Ready';

/**
 * Marks an Active runner `Inactive` (condition `Ready=False, reason=HeartbeatTimeout`) when its
 * `status.lastHeartbeatTime` (or, before its first heartbeat, its createdTime) is more than `timeoutSeconds`
 * old by the controller clock. The runner itself sets Active again with its next heartbeat.
 * Source: issue 2, "Controllers" (30 s); checked on every runner change and periodic pass.
 */
export class RunnerLivenessController implements Controller {
  readonly name = 'runner-liveness';

  /** @param timeoutSeconds heartbeat age after which a runner is Inactive (default 30). */
  constructor(
    private readonly context: ControllerContext,
    private readonly timeoutSeconds = 30,
  ) {}

  keysFor(kind: Kind, object: Resource, removed: boolean): string[] {
    return kind === 'Runner' && !removed ? [object.metadata.id] : [];
  }

  allKeys(): string[] {
    return this.context.runners.list().map((runner) => runner.metadata.id);
  }

  async reconcile(id: string): Promise<void> {
    const { runners, store, clock } = this.context;
    const runner = runners.get(id);
    if (!runner || !this.expired(runner)) return;
    try {
      const updated = await store.update('Runner', id, (current) => {
        if (!this.expired(current)) return undefined;
        const last = current.status.lastHeartbeatTime ?? 'never';
        const status = {
          ...current.status,
          phase: 'Inactive' as const,
          conditions: setCondition(
            current.status.conditions,
            RUNNER_READY,
            'False',
            'HeartbeatTimeout',
            `no heartbeat for more than ${this.timeoutSeconds} s (last heartbeat: ${last})`,
            clock.now(),
          ),
        };
        return { ...current, status };
      });
      runners.apply(updated);
      this.context.logger.warn({ runnerId: id, lastHeartbeatTime: updated.status.lastHeartbeatTime }, 'runner marked inactive');
    } catch (error) {
      if (error instanceof NotFoundError) return;
      throw error;
    }
  }

  private expired(runner: Runner): boolean {
    if (runner.status.phase !== 'Active') return false;
    const last = Date.parse(runner.status.lastHeartbeatTime ?? runner.metadata.createdTime);
    return this.context.clock.now().getTime() - last > this.timeoutSeconds * 1000;
  }
}
