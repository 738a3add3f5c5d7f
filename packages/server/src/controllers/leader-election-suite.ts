// The ControllerManager runs controllers only while holding the lease: one leader among several managers. One suite,
// run by manager.test.ts (PGlite, unit tier) and manager-postgres.integration.test.ts (PostgreSQL, integration tier).
import { silentLogger } from '@warren/base';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { SqlStore } from '../storage/index.js';
import { closeSharedPglite, openTestStore, type TestStore } from '../storage/testing.js';
import { ControllerManager } from './manager.js';
import { createClass, createEnvironment, createRunner, eventually } from './testing.js';

/** Registers the leader election suite for one engine (`postgres` needs WARREN_TEST_DATABASE_URL). */
export function leaderElectionSuite(engine: 'pglite' | 'postgres'): void {
  describe(`ControllerManager (${engine})`, () => {
    afterAll(closeSharedPglite);
    let test: TestStore | undefined;
    const managers: ControllerManager[] = [];
    afterEach(async () => {
      await Promise.all(managers.splice(0).map((manager) => manager.stop()));
      await test?.cleanup();
    });

    it('runs the controllers in exactly one of two server processes and fails over when it stops', async () => {
      test = await openTestStore(engine);
      // On PostgreSQL the second store is a separate pool and lease connection, as another server process would have.
      const stores: SqlStore[] = [test.store, await test.openAnother()];
      const [first, second] = stores.map((store) => {
        const manager = new ControllerManager({ store, logger: silentLogger, leaseRetryMs: 50, checkIntervalMs: 25 });
        managers.push(manager);
        return manager;
      }) as [ControllerManager, ControllerManager];
      await createClass(test.store, 'default');
      await createRunner(test.store, 'host');
      first.start();
      await eventually(() => (first.isLeader ? true : undefined), 'first manager leading');
      second.start();
      const before = await createEnvironment(test.store, 'before');
      await eventually(
        async () => ((await test!.store.get('Environment', before.metadata.id))?.status.runnerId ? true : undefined),
        'scheduled by the leader',
      );
      // Several retry periods of the second manager pass while the first holds the lease.
      for (let check = 0; check < 10; check++) {
        expect([first.isLeader, second.isLeader]).toEqual([true, false]);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await first.stop();
      expect(first.isLeader).toBe(false);
      await eventually(() => (second.isLeader ? true : undefined), 'second manager taking over');
      const after = await createEnvironment(stores[1]!, 'after');
      await eventually(
        async () => ((await stores[1]!.get('Environment', after.metadata.id))?.status.runnerId ? true : undefined),
        'scheduled by the new leader',
      );
    });
  });
}
