// Garbage collection: removes deleted environments from the store once nothing is left on a runner.
import type { Environment, Kind, Resource } from '@warren/api';
import { ConflictError, NotFoundError } from '@warren/base';
import type { Controller, ControllerContext } from './controller.js';

/**
 * Removes an Environment with `spec.desiredPhase: Deleted` when no runner holds it: it was never scheduled
 * (`status.runnerId` unset, so removal is immediate) or its runner reported `status.phase: Deleted` after
 * removing every trace. The delete is guarded by the observed resourceVersion, so a concurrent change
 * (e.g. a runner's status write) makes it re-check instead of deleting on stale data.
 */
export class GarbageCollector implements Controller {
  readonly name = 'garbage-collector';

  constructor(private readonly context: ControllerContext) {}

  keysFor(kind: Kind, object: Resource, removed: boolean): string[] {
    return kind === 'Environment' && !removed && collectable(object as Environment) ? [object.metadata.id] : [];
  }

  allKeys(): string[] {
    return this.context.environments
      .list()
      .filter(collectable)
      .map((environment) => environment.metadata.id);
  }

  async reconcile(id: string): Promise<void> {
    const { environments, store } = this.context;
    const environment = environments.get(id);
    if (!environment || !collectable(environment)) return;
    try {
      const deleted = await store.delete('Environment', id, { expectedResourceVersion: environment.metadata.resourceVersion });
      environments.applyDeleted(deleted);
      this.context.logger.info({ environmentId: id }, 'environment removed');
    } catch (error) {
      if (error instanceof NotFoundError) return;
      if (error instanceof ConflictError) {
        // The cache is behind: read the current state and decide again.
        const current = await store.get('Environment', id);
        if (!current) return;
        environments.apply(current);
        if (collectable(current)) throw error; // retry with backoff
        return;
      }
      throw error;
    }
  }
}

/** True when the environment is to be deleted and no runner holds anything of it. */
function collectable(environment: Environment): boolean {
  return environment.spec.desiredPhase === 'Deleted' && (!environment.status.runnerId || environment.status.phase === 'Deleted');
}
