// Informer: list then watch into a cache, events with the old object, stale events ignored, resume after a
// broken watch, relist after 410 Gone with the differences handed out, predicates, resync. Time moved by hand.
import { WarrenError } from '@warren/base';
import { afterEach, describe, expect, it } from 'vitest';
import type { WatchEvent } from '../resources.js';
import { Informer, type InformerEvent, type ListerWatcher } from './informer.js';
import { changedPredicate, generationChangedPredicate } from './predicates.js';
import { FakeTime, until } from './testing.js';

interface Thing {
  metadata: { id: string; resourceVersion: string; generation: number };
  spec: { size: number };
  status: { seen?: string };
}

/**
 * An in-memory store with a global resourceVersion and an event history: `list` answers a snapshot, `watch`
 * replays the history after a version and then follows live writes. `forgetHistory` makes older versions 410.
 */
class FakeSource implements ListerWatcher<Thing> {
  private version = 0;
  private readonly objects = new Map<string, Thing>();
  private history: WatchEvent<Thing>[] = [];
  private readonly live = new Set<() => void>();
  private failNext: Error | undefined;
  lists = 0;
  watches: string[] = [];

  write(id: string, change: (thing: Thing) => Thing = (thing) => thing): Thing {
    const current = this.objects.get(id);
    const base: Thing = current ?? { metadata: { id, resourceVersion: '0', generation: 1 }, spec: { size: 1 }, status: {} };
    const next = change(structuredClone(base));
    const generation =
      current && JSON.stringify(next.spec) !== JSON.stringify(current.spec) ? base.metadata.generation + 1 : base.metadata.generation;
    const stored = { ...next, metadata: { ...next.metadata, generation, resourceVersion: String(++this.version) } };
    this.objects.set(id, stored);
    this.record({ type: current ? 'MODIFIED' : 'ADDED', object: stored });
    return stored;
  }

  remove(id: string): void {
    const current = this.objects.get(id)!;
    this.objects.delete(id);
    this.record({ type: 'DELETED', object: { ...current, metadata: { ...current.metadata, resourceVersion: String(++this.version) } } });
  }

  /** Drops the kept history: watches from older versions fail with 410 Gone. */
  forgetHistory(): void {
    this.history = [];
  }

  /** Breaks the running watches with `error` (the next events are replayed on the resumed watch). */
  breakWatches(error = new Error('connection reset')): void {
    this.failNext = error;
    for (const wake of this.live) wake();
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- an in-memory source
  async list(): Promise<{ items: Thing[]; resourceVersion: string }> {
    this.lists++;
    return { items: [...this.objects.values()], resourceVersion: String(this.version) };
  }

  async *watch(resourceVersion: string, signal: AbortSignal): AsyncIterable<WatchEvent<Thing>> {
    this.watches.push(resourceVersion);
    let after = Number(resourceVersion);
    const oldest = this.history[0];
    if (after < this.version && (!oldest || Number(oldest.object.metadata.resourceVersion) > after + 1)) {
      throw new WarrenError('Gone', 410, `resourceVersion ${after} is too old`);
    }
    for (;;) {
      if (signal.aborted) throw new DOMException('aborted', 'AbortError');
      if (this.failNext) {
        const error = this.failNext;
        this.failNext = undefined;
        throw error;
      }
      const next = this.history.find((event) => Number(event.object.metadata.resourceVersion) > after);
      if (next) {
        after = Number(next.object.metadata.resourceVersion);
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.live.delete(wake);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.live.add(wake);
        signal.addEventListener('abort', wake);
      });
    }
  }

  private record(event: WatchEvent<Thing>): void {
    this.history.push(event);
    for (const wake of [...this.live]) wake();
  }
}

/** A compact form of events for assertions: `Added a@1`, `Updated a@1->2`, `Deleted a`, `Resync a`. */
function describeEvent(event: InformerEvent<Thing>): string {
  const { id, resourceVersion } = event.object.metadata;
  switch (event.type) {
    case 'Added':
      return `Added ${id}@${resourceVersion}`;
    case 'Updated':
      return `Updated ${id}@${event.old.metadata.resourceVersion}->${resourceVersion}`;
    case 'Deleted':
      return `Deleted ${id}`;
    case 'Resync':
      return `Resync ${id}`;
  }
}

describe('Informer', () => {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  function start(source: FakeSource, options: { resyncIntervalMs?: number; relistIntervalMs?: number } = {}) {
    const time = new FakeTime();
    const informer = new Informer<Thing>({ listerWatcher: source, name: 'things', time, ...options });
    const events: string[] = [];
    informer.subscribe((event) => events.push(describeEvent(event)));
    const controller = new AbortController();
    const running = informer.run(controller.signal);
    stops.push(async () => {
      controller.abort();
      await running;
    });
    return { informer, events, time, running, stop: controller };
  }

  it('lists, then watches from the list: a cache with Added, Updated (with the old object) and Deleted events', async () => {
    const source = new FakeSource();
    source.write('a');
    source.write('b');
    const { informer, events } = start(source);
    await informer.whenSynced();
    expect(informer.hasSynced).toBe(true);
    expect(events).toEqual(['Added a@1', 'Added b@2']);
    expect(source.watches).toEqual(['2']);
    source.write('a', (thing) => ({ ...thing, spec: { size: 2 } }));
    source.remove('b');
    source.write('c');
    await until(() => events.length === 5, 'watch events');
    expect(events.slice(2)).toEqual(['Updated a@1->3', 'Deleted b', 'Added c@5']);
    expect(informer.list().map((thing) => thing.metadata.id)).toEqual(['a', 'c']);
    expect(informer.get('a')?.spec.size).toBe(2);
  });

  it('records own writes at once and ignores their late echo and anything older than the cache', async () => {
    const source = new FakeSource();
    source.write('a');
    const { informer, events } = start(source);
    await informer.whenSynced();
    const written = source.write('a', (thing) => ({ ...thing, status: { seen: 'yes' } }));
    informer.apply(written); // before the watch delivers it
    expect(informer.get('a')?.status.seen).toBe('yes');
    informer.apply({ ...written, metadata: { ...written.metadata, resourceVersion: '1' }, status: {} }); // stale
    source.write('b');
    await until(() => informer.get('b') !== undefined, 'b');
    expect(events).toEqual(['Added a@1', 'Updated a@1->2', 'Added b@3']);
    informer.applyDeleted(informer.get('b')!);
    expect(informer.get('b')).toBeUndefined();
    expect(events.at(-1)).toBe('Deleted b');
  });

  it('after a broken watch, watches again from the last version seen without listing again', async () => {
    const source = new FakeSource();
    source.write('a');
    const { informer, events, time } = start(source);
    await informer.whenSynced();
    source.write('a', (thing) => ({ ...thing, spec: { size: 5 } }));
    await until(() => events.length === 2);
    source.breakWatches();
    source.write('b'); // happens while the watch is down
    await until(() => time.pending > 0, 'retry timer');
    time.advance(10_000);
    await until(() => events.length === 3, 'replayed event');
    expect(events[2]).toBe('Added b@3');
    expect(source.lists).toBe(1);
    expect(source.watches).toEqual(['1', '2']);
  });

  it('after 410 Gone, lists again and hands out only the differences', async () => {
    const source = new FakeSource();
    for (const id of ['kept', 'changed', 'removed']) source.write(id);
    const { informer, events, time } = start(source);
    await informer.whenSynced();
    source.breakWatches();
    await until(() => time.pending > 0, 'retry timer');
    // While the watch is down: changes, and the history that would replay them is gone.
    source.write('changed', (thing) => ({ ...thing, spec: { size: 9 } }));
    source.remove('removed');
    source.write('new');
    source.forgetHistory();
    time.advance(10_000);
    await until(() => source.lists === 2 && events.length === 6, 'relist');
    expect(events.slice(3)).toEqual(['Updated changed@2->4', 'Added new@6', 'Deleted removed']);
    expect(
      informer
        .list()
        .map((thing) => thing.metadata.id)
        .sort(),
    ).toEqual(['changed', 'kept', 'new']);
    source.write('kept', (thing) => ({ ...thing, spec: { size: 3 } }));
    await until(() => events.length === 7, 'watch after relist');
    expect(events[6]).toBe('Updated kept@1->7');
  });

  it('relists on request and every relistIntervalMs', async () => {
    const source = new FakeSource();
    source.write('a');
    const { informer, time } = start(source, { relistIntervalMs: 60_000 });
    await informer.whenSynced();
    informer.relist();
    await until(() => source.lists === 2, 'relist on request');
    time.advance(60_000);
    await until(() => source.lists === 3, 'periodic relist');
  });

  it('hands every cached object out again every resyncIntervalMs', async () => {
    const source = new FakeSource();
    source.write('a');
    source.write('b');
    const { informer, events, time } = start(source, { resyncIntervalMs: 1_000 });
    await informer.whenSynced();
    time.advance(999);
    expect(events).toEqual(['Added a@1', 'Added b@2']);
    time.advance(1);
    expect(events.slice(2)).toEqual(['Resync a', 'Resync b']);
    time.advance(1_000);
    expect(events).toHaveLength(6);
  });

  it('passes to a handler only the events its predicates accept', async () => {
    const source = new FakeSource();
    source.write('a');
    const time = new FakeTime();
    const informer = new Informer<Thing>({ listerWatcher: source, name: 'things', time });
    const generations: string[] = [];
    const statuses: string[] = [];
    informer.subscribe((event) => generations.push(describeEvent(event)), generationChangedPredicate());
    informer.subscribe(
      (event) => statuses.push(describeEvent(event)),
      changedPredicate((thing: Thing) => thing.status.seen),
    );
    const controller = new AbortController();
    const running = informer.run(controller.signal);
    await informer.whenSynced();
    source.write('a', (thing) => ({ ...thing, status: { seen: 'once' } }));
    source.write('a', (thing) => ({ ...thing, spec: { size: 4 } }));
    source.remove('a');
    await until(() => informer.list().length === 0);
    informer.resync();
    controller.abort();
    await running;
    expect(generations).toEqual(['Added a@1', 'Updated a@2->3', 'Deleted a']);
    expect(statuses).toEqual(['Added a@1', 'Updated a@1->2', 'Deleted a']);
  });

  it('calls onListed after every list, before the watch and before whenSynced, and goes on when it throws', async () => {
    const source = new FakeSource();
    source.write('a');
    const seen: string[] = [];
    let synced = false;
    const informer = new Informer<Thing>({
      listerWatcher: source,
      name: 'things',
      time: new FakeTime(),
      // eslint-disable-next-line @typescript-eslint/require-await -- a fake hook
      onListed: async (items) => {
        seen.push(`listed ${items.map((item) => item.metadata.id).join(',')}; watches ${source.watches.length}; synced ${synced}`);
        throw new Error('hook failed');
      },
    });
    void informer.whenSynced().then(() => (synced = true));
    const controller = new AbortController();
    const running = informer.run(controller.signal);
    await informer.whenSynced();
    source.write('b');
    await until(() => informer.get('b') !== undefined, 'watch after a failed hook');
    informer.relist();
    await until(() => seen.length === 2, 'second list');
    controller.abort();
    await running;
    expect(seen).toEqual(['listed a; watches 0; synced false', 'listed a,b; watches 1; synced true']);
  });

  it('stops when its signal aborts, also while the first list keeps failing', async () => {
    const failing: ListerWatcher<Thing> = {
      list: () => Promise.reject(new Error('server down')),
      // eslint-disable-next-line require-yield, @typescript-eslint/require-await -- never reached
      watch: async function* () {
        throw new Error('unreachable');
      },
    };
    const time = new FakeTime();
    const informer = new Informer<Thing>({ listerWatcher: failing, name: 'things', time });
    const controller = new AbortController();
    const running = informer.run(controller.signal);
    await until(() => time.pending > 0, 'retry timer');
    time.advance(10_000);
    await until(() => time.pending > 0, 'second retry timer');
    controller.abort();
    await running;
    expect(informer.hasSynced).toBe(false);
  });
});
