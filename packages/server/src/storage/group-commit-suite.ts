// Group commit of the SQL store: concurrent writes share a transaction, yet each keeps its own
// resourceVersion, event and error. One suite, run by group-commit.test.ts (PGlite, unit tier) and
// postgres.integration.test.ts (PostgreSQL, integration tier).
import { EnvironmentSpecSchema, EnvironmentStatusSchema, type Environment, type WatchEvent } from '@warren/api';
import { ConflictError, NotFoundError } from '@warren/base';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { NewObject } from './store.js';
import { closeSharedPglite, openTestStore, type TestStore } from './testing.js';

function environment(name: string, labels: Record<string, string> = {}): NewObject<'Environment'> {
  return {
    name,
    ownerId: 'usr-alice',
    labels,
    spec: EnvironmentSpecSchema.parse({ source: { git: { url: 'https://example.com/repo.git' } } }),
    status: EnvironmentStatusSchema.parse({ phase: 'Pending' }),
  };
}

/** Reads `count` events of a watch from `fromResourceVersion`. */
async function history(test: TestStore, fromResourceVersion: string, count: number): Promise<WatchEvent<Environment>[]> {
  const controller = new AbortController();
  const events: WatchEvent<Environment>[] = [];
  for await (const event of test.store.watch('Environment', {
    fromResourceVersion,
    signal: AbortSignal.any([controller.signal, AbortSignal.timeout(10_000)]),
  })) {
    events.push(event);
    if (events.length === count) break;
  }
  controller.abort();
  return events;
}

/** Registers the group commit suite for one engine (`postgres` needs WARREN_TEST_DATABASE_URL). */
export function groupCommitSuite(engine: 'pglite' | 'postgres'): void {
  describe(`group commit (${engine})`, () => {
    let test: TestStore;
    afterEach(async () => {
      await test?.cleanup();
    });
    afterAll(async () => {
      await closeSharedPglite();
    });

    it('gives concurrent writes consecutive resourceVersions in call order and fails only the duplicate name', async () => {
      test = await openTestStore(engine);
      const { store } = test;
      const start = await store.create('Environment', environment('first'));
      const names = Array.from({ length: 20 }, (_, index) => (index === 10 ? 'e-3' : `e-${index}`));
      const results = await Promise.allSettled(names.map((name) => store.create('Environment', environment(name))));
      const failed = results.flatMap((result, index) => (result.status === 'rejected' ? [[index, result.reason] as const] : []));
      expect(failed).toHaveLength(1);
      expect(failed[0]![0]).toBe(10);
      expect(failed[0]![1]).toBeInstanceOf(ConflictError);
      expect((failed[0]![1] as ConflictError).reason).toBe('AlreadyExists');
      const versions = results.flatMap((result) => (result.status === 'fulfilled' ? [Number(result.value.metadata.resourceVersion)] : []));
      const first = Number(start.metadata.resourceVersion);
      expect(versions).toEqual(Array.from({ length: 19 }, (_, index) => first + 1 + index));
      const events = await history(test, start.metadata.resourceVersion, 19);
      expect(events.map((event) => `${event.type} ${event.object.metadata.name}@${event.object.metadata.resourceVersion}`)).toEqual(
        names.filter((_, index) => index !== 10).map((name, index) => `ADDED ${name}@${first + 1 + index}`),
      );
    });

    it('isolates a failing mutation, a resourceVersion conflict and a missing object from the rest of a batch', async () => {
      test = await openTestStore(engine);
      const { store } = test;
      const a = await store.create('Environment', environment('a'));
      const b = await store.create('Environment', environment('b'));
      const label = (value: string) => (current: Environment) => ({
        ...current,
        metadata: { ...current.metadata, labels: { step: value } },
      });
      const results = await Promise.allSettled([
        store.create('Environment', environment('c')),
        store.update('Environment', a.metadata.id, label('1')),
        store.update('Environment', a.metadata.id, () => {
          throw new Error('mutation refused');
        }),
        store.update('Environment', b.metadata.id, label('x'), { expectedResourceVersion: '1' }),
        store.delete('Environment', 'env-doesnotexist0000'),
        store.update('Environment', a.metadata.id, label('2')),
        store.delete('Environment', b.metadata.id),
        store.create('Environment', environment('b')), // the name just freed in the same batch
      ]);
      expect(results.map((result) => result.status)).toEqual([
        'fulfilled',
        'fulfilled',
        'rejected',
        'rejected',
        'rejected',
        'fulfilled',
        'fulfilled',
        'fulfilled',
      ]);
      expect((results[2] as PromiseRejectedResult).reason).toEqual(new Error('mutation refused'));
      expect((results[3] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
      expect((results[4] as PromiseRejectedResult).reason).toBeInstanceOf(NotFoundError);
      const stored = await store.get('Environment', a.metadata.id);
      expect(stored?.metadata.labels).toEqual({ step: '2' });
      expect(stored?.metadata.resourceVersion).toBe((results[5] as PromiseFulfilledResult<Environment>).value.metadata.resourceVersion);
      expect(await store.get('Environment', b.metadata.id)).toBeUndefined();
      const events = await history(test, b.metadata.resourceVersion, 5);
      const base = Number(b.metadata.resourceVersion);
      expect(
        events.map((event) => `${event.type} ${event.object.metadata.name}@${Number(event.object.metadata.resourceVersion) - base}`),
      ).toEqual(['ADDED c@1', 'MODIFIED a@2', 'MODIFIED a@3', 'DELETED b@4', 'ADDED b@5']);
      expect((await store.getByName('Environment', 'b')).map((each) => each.metadata.resourceVersion)).toEqual([String(base + 5)]);
    });

    it('retries the writes of a batch alone when the database rejects the batch, so only the bad write fails', async () => {
      test = await openTestStore(engine);
      const { store } = test;
      const start = await store.create('Environment', environment('start'));
      // jsonb cannot hold U+0000 (PostgreSQL docs, "JSON Types"): the database rejects this one statement.
      const results = await Promise.allSettled([
        store.create('Environment', environment('good-1')),
        store.create('Environment', environment('bad', { note: 'nul\u0000' })),
        store.create('Environment', environment('good-2')),
      ]);
      expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      const events = await history(test, start.metadata.resourceVersion, 2);
      expect(
        events.map(
          (event) =>
            `${event.object.metadata.name}@${Number(event.object.metadata.resourceVersion) - Number(start.metadata.resourceVersion)}`,
        ),
      ).toEqual(['good-1@1', 'good-2@2']);
    });
  });
}
