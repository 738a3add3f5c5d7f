// The ResourceStore contract suite, one definition run by store.contract.test.ts (PGlite, unit tier) and
// postgres.integration.test.ts (PostgreSQL, integration tier).
import { EnvironmentSpecSchema, EnvironmentStatusSchema, RunnerStatusSchema, type WatchEvent } from '@warren/api';
import { ConflictError, NotFoundError } from '@warren/base';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GoneError } from './errors.js';
import type { OpenStoreOptions, SqlStore } from './sql-store.js';
import type { NewObject } from './store.js';
import { testDatabaseUrl, type TestStore } from './testing.js';

/** Opens a fresh store for one test (see testing.ts openTestStore). */
export type Factory = (overrides?: Partial<OpenStoreOptions>) => Promise<TestStore>;

/** A new Environment for the store: `Pending`, on `runnerId` when given, with a fixed git source. */
export function environment(
  name: string,
  ownerId = 'usr-alice',
  runnerId?: string,
  labels?: Record<string, string>,
): NewObject<'Environment'> {
  return {
    name,
    ownerId,
    ...(labels ? { labels } : {}),
    spec: EnvironmentSpecSchema.parse({ source: { git: { url: 'https://example.com/repo.git' } } }),
    status: EnvironmentStatusSchema.parse({ phase: 'Pending', ...(runnerId ? { runnerId } : {}) }),
  };
}

/** Collects `count` events (or fewer when the watch ends, e.g. because `signal` timed out). */
async function take<T>(iterator: AsyncIterator<T>, count: number): Promise<T[]> {
  const out: T[] = [];
  while (out.length < count) {
    const next = await iterator.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

function summary(events: WatchEvent<{ metadata: { name: string } }>[]): string[] {
  return events.map((event) => `${event.type} ${event.object.metadata.name}`);
}

/**
 * Registers the contract suite for one engine: `factory` opens a store in a fresh schema per test.
 * The `postgres` engine also opens plain `pg` clients on WARREN_TEST_DATABASE_URL.
 */
export function contractSuite(engine: 'pglite' | 'postgres', factory: Factory): void {
  describe(`ResourceStore contract (${engine})`, () => {
    let test: TestStore;
    let store: SqlStore;
    let watches: AbortController;
    const open = async (overrides?: Partial<OpenStoreOptions>) => {
      test = await factory(overrides);
      store = test.store;
    };
    beforeEach(() => {
      watches = new AbortController();
    });
    afterEach(async () => {
      watches.abort();
      await test?.cleanup();
    });
    const watchSignal = () => AbortSignal.any([watches.signal, AbortSignal.timeout(20_000)]);

    it('creates and gets objects with server-filled metadata and kind-prefixed ids', async () => {
      await open();
      const created = await store.create('Environment', environment('one', 'usr-alice', undefined, { team: 'a' }));
      expect(created.metadata.id).toMatch(/^env-[a-z2-7]{16}$/);
      expect(created.metadata).toMatchObject({ name: 'one', generation: 1, ownerId: 'usr-alice', labels: { team: 'a' } });
      expect(created.metadata.resourceVersion).toMatch(/^\d+$/);
      expect(new Date(created.metadata.createdTime).toISOString()).toBe(created.metadata.createdTime);
      expect(await store.get('Environment', created.metadata.id)).toEqual(created);
      expect(await store.get('Environment', 'env-doesnotexist0000')).toBeUndefined();
      expect(await store.get('Runner', created.metadata.id)).toBeUndefined();
      const runner = await store.create('Runner', {
        name: 'host-1',
        ownerId: '',
        spec: { unschedulable: false },
        status: RunnerStatusSchema.parse({ phase: 'Active' }),
      });
      const environmentClass = await store.create('EnvironmentClass', {
        name: 'small',
        ownerId: '',
        spec: { cpuMillicores: 1000, memoryBytes: 1 << 30, swapBytes: 0, pids: 4096 },
        status: {},
      });
      const user = await store.create('User', { name: 'alice', ownerId: '', spec: { admin: true }, status: {} });
      const token = await store.create('Token', { name: 'cli', ownerId: user.metadata.id, spec: { type: 'Personal' }, status: {} });
      expect([runner, environmentClass, user, token].map((object) => object.metadata.id.slice(0, 4))).toEqual([
        'run-',
        'cls-',
        'usr-',
        'tok-',
      ]);
      const chosen = await store.create('Environment', { ...environment('two'), id: 'env-chosen' });
      expect(chosen.metadata.id).toBe('env-chosen');
      expect(Number(token.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
    });

    it('lists by kind, owner, runner and labels in creation order, with the current resourceVersion', async () => {
      await open();
      const a = await store.create('Environment', environment('a', 'usr-alice', 'run-1', { tier: 'gold' }));
      const b = await store.create('Environment', environment('b', 'usr-bob', 'run-1'));
      const c = await store.create('Environment', environment('c', 'usr-alice', 'run-2', { tier: 'gold', zone: 'x' }));
      await store.create('User', { name: 'alice', ownerId: '', spec: { admin: false }, status: {} });
      const all = await store.list('Environment');
      expect(all.items.map((item) => item.metadata.name)).toEqual(['a', 'b', 'c']);
      const users = await store.list('User');
      expect(all.resourceVersion).toBe(users.items[0]!.metadata.resourceVersion);
      const names = async (filter: Parameters<SqlStore['list']>[1]) =>
        (await store.list('Environment', filter)).items.map((item) => item.metadata.name);
      expect(await names({ ownerId: 'usr-alice' })).toEqual(['a', 'c']);
      expect(await names({ runnerId: 'run-1' })).toEqual(['a', 'b']);
      expect(await names({ labels: { tier: 'gold' } })).toEqual(['a', 'c']);
      expect(await names({ labels: { tier: 'gold', zone: 'x' } })).toEqual(['c']);
      expect(await names({ ownerId: 'usr-alice', runnerId: 'run-1' })).toEqual(['a']);
      expect(await names({ ownerId: 'usr-nobody' })).toEqual([]);
      expect([a, b, c].map((item) => item.metadata.name)).toEqual(['a', 'b', 'c']);
    });

    it('keeps names unique per kind, and per owner for environments', async () => {
      await open();
      await store.create('Environment', environment('dev', 'usr-alice'));
      const bobs = await store.create('Environment', environment('dev', 'usr-bob'));
      await expect(store.create('Environment', environment('dev', 'usr-alice'))).rejects.toSatisfy(
        (error: unknown) => error instanceof ConflictError && error.reason === 'AlreadyExists' && error.code === 409,
      );
      expect((await store.getByName('Environment', 'dev')).length).toBe(2);
      expect(await store.getByName('Environment', 'dev', { ownerId: 'usr-bob' })).toEqual([bobs]);
      await store.create('Runner', {
        name: 'host',
        ownerId: 'usr-alice',
        spec: { unschedulable: false },
        status: RunnerStatusSchema.parse({ phase: 'Active' }),
      });
      await expect(
        store.create('Runner', {
          name: 'host',
          ownerId: 'usr-bob',
          spec: { unschedulable: false },
          status: RunnerStatusSchema.parse({ phase: 'Active' }),
        }),
      ).rejects.toBeInstanceOf(ConflictError);
      // Another kind may reuse the name.
      await store.create('User', { name: 'host', ownerId: '', spec: { admin: false }, status: {} });
      await expect(store.create('Environment', { ...environment('other'), id: bobs.metadata.id })).rejects.toBeInstanceOf(ConflictError);
    });

    it('bumps generation only on spec changes and resourceVersion on every real change', async () => {
      await open();
      const created = await store.create('Environment', environment('gen'));
      const statusOnly = await store.update('Environment', created.metadata.id, (current) => ({
        ...current,
        status: { ...current.status, phase: 'Creating' },
      }));
      expect(statusOnly.metadata.generation).toBe(1);
      expect(Number(statusOnly.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
      const specChange = await store.update('Environment', created.metadata.id, (current) => ({
        ...current,
        spec: { ...current.spec, desiredPhase: 'Stopped' },
      }));
      expect(specChange.metadata.generation).toBe(2);
      expect(specChange.spec.desiredPhase).toBe('Stopped');
      const labelsOnly = await store.update('Environment', created.metadata.id, (current) => ({
        ...current,
        metadata: { ...current.metadata, labels: { a: 'b' } },
      }));
      expect(labelsOnly.metadata).toMatchObject({ generation: 2, labels: { a: 'b' } });
      // Same content (keys reordered) and an explicit "no change": neither writes.
      const same = await store.update('Environment', created.metadata.id, (current) => ({ ...current, spec: { ...current.spec } }));
      expect(same.metadata.resourceVersion).toBe(labelsOnly.metadata.resourceVersion);
      const none = await store.update('Environment', created.metadata.id, () => undefined);
      expect(none).toEqual(labelsOnly);
      expect(await store.get('Environment', created.metadata.id)).toEqual(labelsOnly);
      // Identity fields cannot be changed through a mutation.
      const renamed = await store.update('Environment', created.metadata.id, (current) => ({
        ...current,
        metadata: { ...current.metadata, name: 'other', ownerId: 'usr-mallory', deletionTime: '2030-01-01T00:00:00.000Z' },
      }));
      expect(renamed.metadata).toMatchObject({ name: 'gen', ownerId: 'usr-alice', deletionTime: '2030-01-01T00:00:00.000Z' });
      await expect(store.update('Environment', 'env-missing', (current) => current)).rejects.toBeInstanceOf(NotFoundError);
      await expect(
        store.update('Environment', created.metadata.id, () => {
          throw new Error('refused');
        }),
      ).rejects.toThrow('refused');
    });

    it('rejects writes with a stale resourceVersion (409 Conflict)', async () => {
      await open();
      const created = await store.create('Environment', environment('occ'));
      const rv = created.metadata.resourceVersion;
      const updated = await store.update(
        'Environment',
        created.metadata.id,
        (current) => ({ ...current, status: { ...current.status, phase: 'Creating' } }),
        {
          expectedResourceVersion: rv,
        },
      );
      await expect(
        store.update('Environment', created.metadata.id, (current) => ({ ...current, status: { ...current.status, phase: 'Failed' } }), {
          expectedResourceVersion: rv,
        }),
      ).rejects.toSatisfy((error: unknown) => error instanceof ConflictError && error.reason === 'Conflict' && error.code === 409);
      await expect(store.delete('Environment', created.metadata.id, { expectedResourceVersion: rv })).rejects.toBeInstanceOf(ConflictError);
      expect((await store.get('Environment', created.metadata.id))?.status.phase).toBe('Creating');
      await store.delete('Environment', created.metadata.id, { expectedResourceVersion: updated.metadata.resourceVersion });
    });

    it('deletes objects, frees their name and reports missing ones', async () => {
      await open();
      const created = await store.create('Environment', environment('gone'));
      const deleted = await store.delete('Environment', created.metadata.id);
      expect(deleted.metadata.id).toBe(created.metadata.id);
      expect(Number(deleted.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));
      expect(await store.get('Environment', created.metadata.id)).toBeUndefined();
      await expect(store.delete('Environment', created.metadata.id)).rejects.toBeInstanceOf(NotFoundError);
      await store.create('Environment', environment('gone'));
    });

    it('watches from now: current objects as ADDED, then live events in order', async () => {
      await open();
      const existing = await store.create('Environment', environment('existing'));
      await store.create('Runner', {
        name: 'ignored',
        ownerId: '',
        spec: { unschedulable: false },
        status: RunnerStatusSchema.parse({ phase: 'Active' }),
      });
      const iterator = store.watch('Environment', { signal: watchSignal() })[Symbol.asyncIterator]();
      expect(summary(await take(iterator, 1))).toEqual(['ADDED existing']);
      const live = await store.create('Environment', environment('live'));
      await store.update('Environment', existing.metadata.id, (current) => ({
        ...current,
        spec: { ...current.spec, desiredPhase: 'Stopped' },
      }));
      await store.create('User', { name: 'noise', ownerId: '', spec: { admin: false }, status: {} });
      await store.delete('Environment', live.metadata.id);
      const events = await take(iterator, 3);
      expect(summary(events)).toEqual(['ADDED live', 'MODIFIED existing', 'DELETED live']);
      const versions = events.map((event) => Number(event.object.metadata.resourceVersion));
      expect([...versions].sort((x, y) => x - y)).toEqual(versions);
      await iterator.return?.();
    });

    it('resumes a watch after a resourceVersion, replaying history first', async () => {
      await open();
      const first = await store.create('Environment', environment('first'));
      const second = await store.create('Environment', environment('second'));
      await store.update('Environment', first.metadata.id, (current) => ({ ...current, status: { ...current.status, phase: 'Running' } }));
      await store.delete('Environment', second.metadata.id);
      const iterator = store
        .watch('Environment', { fromResourceVersion: first.metadata.resourceVersion, signal: watchSignal() })
        [Symbol.asyncIterator]();
      expect(summary(await take(iterator, 3))).toEqual(['ADDED second', 'MODIFIED first', 'DELETED second']);
      await store.create('Environment', environment('third'));
      expect(summary(await take(iterator, 1))).toEqual(['ADDED third']);
      await iterator.return?.();
      // Resuming from "now" yields nothing until the next write.
      const head = (await store.list('Environment')).resourceVersion;
      const quiet = store.watch('Environment', { fromResourceVersion: head, signal: watchSignal() })[Symbol.asyncIterator]();
      await store.create('Environment', environment('fourth'));
      expect(summary(await take(quiet, 1))).toEqual(['ADDED fourth']);
      await quiet.return?.();
    });

    it('answers 410 Gone for a resourceVersion older than the kept history', async () => {
      await open({ eventHistoryLimit: 5 });
      const first = await store.create('Environment', environment('e0'));
      for (let index = 1; index < 12; index++) await store.create('Environment', environment(`e${index}`));
      expect(await store.pruneEvents()).toBeGreaterThan(0);
      const iterator = store
        .watch('Environment', { fromResourceVersion: first.metadata.resourceVersion, signal: watchSignal() })
        [Symbol.asyncIterator]();
      await expect(iterator.next()).rejects.toSatisfy(
        (error: unknown) => error instanceof GoneError && error.code === 410 && error.reason === 'Gone',
      );
      // The newest events are kept: resuming from a recent resourceVersion works.
      const recent = String(Number((await store.list('Environment')).resourceVersion) - 2);
      const resumed = store.watch('Environment', { fromResourceVersion: recent, signal: watchSignal() })[Symbol.asyncIterator]();
      expect(summary(await take(resumed, 2))).toEqual(['ADDED e10', 'ADDED e11']);
      await resumed.return?.();
    });

    it('sends DELETED to a filtered watch when an environment moves away, and ADDED when it comes back', async () => {
      await open();
      const moving = await store.create('Environment', environment('moving'));
      const iterator = store
        .watch('Environment', {
          filter: { runnerId: 'run-a' },
          fromResourceVersion: moving.metadata.resourceVersion,
          signal: watchSignal(),
        })
        [Symbol.asyncIterator]();
      const assign = (runnerId: string | undefined) =>
        store.update('Environment', moving.metadata.id, (current) => {
          const status = { ...current.status };
          if (runnerId === undefined) delete status.runnerId;
          else status.runnerId = runnerId;
          return { ...current, status };
        });
      await assign('run-a');
      await store.update('Environment', moving.metadata.id, (current) => ({ ...current, status: { ...current.status, phase: 'Running' } }));
      await assign('run-b');
      await store.update('Environment', moving.metadata.id, (current) => ({ ...current, status: { ...current.status, phase: 'Failed' } }));
      await assign('run-a');
      await store.delete('Environment', moving.metadata.id);
      const events = await take(iterator, 5);
      expect(events.map((event) => `${event.type} ${event.object.status.runnerId}/${event.object.status.phase}`)).toEqual([
        'ADDED run-a/Pending',
        'MODIFIED run-a/Running',
        'DELETED run-b/Running',
        'ADDED run-a/Failed',
        'DELETED run-a/Failed',
      ]);
      await iterator.return?.();
      // Labels: an object whose labels stop matching leaves a label-filtered watch.
      const labelled = await store.create('Environment', environment('labelled', 'usr-alice', undefined, { pool: 'x' }));
      const byLabel = store
        .watch('Environment', {
          filter: { labels: { pool: 'x' } },
          fromResourceVersion: labelled.metadata.resourceVersion,
          signal: watchSignal(),
        })
        [Symbol.asyncIterator]();
      await store.update('Environment', labelled.metadata.id, (current) => ({
        ...current,
        metadata: { ...current.metadata, labels: { pool: 'y' } },
      }));
      expect(summary(await take(byLabel, 1))).toEqual(['DELETED labelled']);
      await byLabel.return?.();
    });

    it('delivers every event exactly once and in order under concurrent writers of two processes', async () => {
      await open();
      const other = await test.openAnother();
      const start = (await store.list('Environment')).resourceVersion;
      const watchers = [store, other].map((each) =>
        each.watch('Environment', { fromResourceVersion: start, signal: watchSignal() })[Symbol.asyncIterator](),
      );
      const writers = 4;
      const perWriter = 25;
      const collected = watchers.map((iterator) => take(iterator, writers * perWriter * 2));
      await Promise.all(
        Array.from({ length: writers }, async (_, writer) => {
          const target = writer % 2 === 0 ? store : other;
          for (let index = 0; index < perWriter; index++) {
            const created = await target.create('Environment', environment(`w${writer}-${index}`));
            await target.update('Environment', created.metadata.id, (current) => ({
              ...current,
              status: { ...current.status, phase: 'Creating' },
            }));
          }
        }),
      );
      for (const events of await Promise.all(collected)) {
        expect(events.length).toBe(writers * perWriter * 2);
        const versions = events.map((event) => Number(event.object.metadata.resourceVersion));
        versions.forEach((version, index) => expect(version).toBe(Number(start) + index + 1));
        expect(events.filter((event) => event.type === 'ADDED').length).toBe(writers * perWriter);
      }
      for (const iterator of watchers) await iterator.return?.();
    });

    it('ends a watcher that falls behind with 410 Gone without blocking writers', async () => {
      await open({ watchBufferSize: 5 });
      const iterator = store.watch('Environment', { signal: watchSignal() })[Symbol.asyncIterator]();
      const seed = await store.create('Environment', environment('seed'));
      expect(summary(await take(iterator, 1))).toEqual(['ADDED seed']);
      for (let index = 0; index < 20; index++) {
        await store.update('Environment', seed.metadata.id, (current) => ({
          ...current,
          status: { ...current.status, message: `step ${index}` },
        }));
      }
      await expect(take(iterator, 20)).rejects.toBeInstanceOf(GoneError);
      expect((await store.get('Environment', seed.metadata.id))?.status.message).toBe('step 19');
    });

    it('ends a watch when its signal aborts', async () => {
      await open();
      const controller = new AbortController();
      const iterator = store.watch('Environment', { signal: controller.signal })[Symbol.asyncIterator]();
      const pending = iterator.next();
      controller.abort();
      expect((await pending).done).toBe(true);
    });

    it('finds tokens by secret hash', async () => {
      await open();
      const token = await store.create('Token', { name: 'cli', ownerId: 'usr-alice', spec: { type: 'Personal' }, status: {} });
      const hash = 'a'.repeat(64);
      await store.setTokenSecretHash(token.metadata.id, hash);
      expect((await store.findTokenBySecretHash(hash))?.metadata.id).toBe(token.metadata.id);
      expect(await store.findTokenBySecretHash('b'.repeat(64))).toBeUndefined();
      await expect(store.setTokenSecretHash('tok-missing', 'c'.repeat(64))).rejects.toBeInstanceOf(NotFoundError);
      await store.delete('Token', token.metadata.id);
      expect(await store.findTokenBySecretHash(hash)).toBeUndefined();
    });

    it('stores settings as JSON', async () => {
      await open();
      expect(await store.getSetting('signingKey')).toBeUndefined();
      await store.setSetting('signingKey', { kid: 'one', bytes: [1, 2, 3] });
      await store.setSetting('signingKey', { kid: 'two', bytes: [4] });
      await store.setSetting('flag', true);
      expect(await store.getSetting('signingKey')).toEqual({ kid: 'two', bytes: [4] });
      expect(await store.getSetting<boolean>('flag')).toBe(true);
      const other = await test.openAnother();
      expect(await other.getSetting('signingKey')).toEqual({ kid: 'two', bytes: [4] });
    });

    it('grants a lease to one store at a time', async () => {
      await open();
      const other = await test.openAnother();
      const lease = await store.tryAcquireLease('controllers');
      expect(lease).toBeDefined();
      expect(await other.tryAcquireLease('controllers')).toBeUndefined();
      expect(await store.tryAcquireLease('controllers')).toBeUndefined();
      const unrelated = await other.tryAcquireLease('something-else');
      expect(unrelated).toBeDefined();
      await lease!.release();
      expect(lease!.signal.aborted).toBe(true);
      const taken = await other.tryAcquireLease('controllers');
      expect(taken).toBeDefined();
      await taken!.release();
      await unrelated!.release();
    });

    if (engine === 'postgres') {
      it('signals a lost lease when its connection dies, and frees it for others', async () => {
        await open({ leaseKeepaliveMs: 100 });
        const other = await test.openAnother();
        const lease = await store.tryAcquireLease('controllers');
        expect(lease).toBeDefined();
        const lost = new Promise<void>((resolve) => lease!.signal.addEventListener('abort', () => resolve(), { once: true }));
        // Kill the lease's backend as a network failure would.
        const admin = new pg.Client({ connectionString: testDatabaseUrl() });
        await admin.connect();
        try {
          const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [
            `warren-lease:${test.schema}:controllers`,
          ]);
          expect(killed.rowCount).toBe(1);
        } finally {
          await admin.end();
        }
        await lost;
        const taken = await other.tryAcquireLease('controllers');
        expect(taken).toBeDefined();
        await taken!.release();
      });
    }
  });
}
