// WorkQueue: deduplication, re-processing of keys added while in flight, and bounded concurrency.
import { silentLogger } from '@warren/base';
import { describe, expect, it } from 'vitest';
import { WorkQueue } from './work-queue.js';

/** A promise with its resolve function exposed. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

describe('WorkQueue', () => {
  it('runs up to `concurrency` different keys at once, never one key twice at once, and reprocesses a key added meanwhile', async () => {
    const queue = new WorkQueue();
    const stop = new AbortController();
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const running = new Set<string>();
    const started: string[] = [];
    let peak = 0;
    const run = queue.run(
      stop.signal,
      async (key) => {
        expect(running.has(key)).toBe(false);
        running.add(key);
        peak = Math.max(peak, running.size);
        started.push(key);
        const gate = deferred();
        gates.set(`${key}#${started.filter((each) => each === key).length}`, gate);
        await gate.promise;
        running.delete(key);
      },
      silentLogger,
      3,
    );
    for (const key of ['a', 'b', 'c', 'd']) queue.add(key);
    const until = async (condition: () => boolean) => {
      while (!condition()) await new Promise((resolve) => setImmediate(resolve));
    };
    await until(() => started.length === 3);
    expect(started).toEqual(['a', 'b', 'c']);
    queue.add('a'); // while a is being processed: must run again afterwards, not concurrently
    queue.add('b');
    queue.add('b'); // deduplicated
    gates.get('a#1')!.resolve();
    await until(() => started.length === 4);
    expect(started[3]).toBe('d'); // the oldest waiting key
    gates.get('b#1')!.resolve();
    await until(() => started.length === 5);
    expect(started[4]).toBe('a'); // a again, after its first run ended; b is queued but a, c and d fill the 3 slots
    gates.get('c#1')!.resolve();
    await until(() => started.length === 6);
    expect(started[5]).toBe('b');
    for (const key of ['d#1', 'a#2', 'b#2']) gates.get(key)!.resolve();
    await until(() => running.size === 0);
    expect(started).toHaveLength(6);
    expect(peak).toBe(3);
    stop.abort();
    await run;
  });
});
