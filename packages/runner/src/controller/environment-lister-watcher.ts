// The runner's source for its Environment informer: list and watch over the API, only the environments
// scheduled to this runner.
import type { Environment, ListerWatcher, WarrenClient } from '@warren/api';

/**
 * A {@link ListerWatcher} of the environments scheduled to the runner `runnerId()` names (read at every list
 * and watch, so a runner registered again under a new id watches its new id). The server filters by
 * `runnerId` and sends an environment that stops matching as DELETED; objects of another runner are dropped
 * here as well, should the server ever send one. A watch from an expired resourceVersion throws ApiError 410.
 */
export function environmentListerWatcher(client: WarrenClient, runnerId: () => string): ListerWatcher<Environment> {
  const ours = (environment: Environment) => environment.status.runnerId === undefined || environment.status.runnerId === runnerId();
  return {
    async list(signal) {
      const list = await client.list('Environment', { runnerId: runnerId(), signal });
      return { items: list.items.filter(ours), resourceVersion: list.metadata.resourceVersion };
    },
    async *watch(resourceVersion, signal) {
      for await (const event of client.watch('Environment', { runnerId: runnerId(), resourceVersion, signal })) {
        if (event.type === 'BOOKMARK' || ours(event.object)) yield event;
      }
    },
  };
}
