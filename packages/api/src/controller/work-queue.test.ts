// WorkQueue and rate limiters: deduplication, one key in flight, FIFO order, delayed and rate-limited adds,
// bounded concurrency, retries with backoff until success, and shutdown. Time is moved by hand.
import { describe, expect, it } from 'vitest';
import { BucketRateLimiter, ItemExponentialRateLimiter, MaxOfRateLimiter } from './rate-limiter.js';
import { FakeTime, until } from './testing.js';
import { WorkQueue } from './work-queue.js';

/** A promise with its resolve function exposed. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** A queue on fake time whose per-key backoff is 100, 200, 400 … ms (no jitter) and whose bucket never limits. */
function newQueue(time = new FakeTime()) {
  const rateLimiter = new MaxOfRateLimiter(
    new ItemExponentialRateLimiter({ baseDelayMs: 100, maxDelayMs: 1_000, jitter: 0 }),
    new BucketRateLimiter({ perSecond: 1_000, burst: 1_000, time }),
  );
  return { queue: new WorkQueue({ rateLimiter, time }), time };
}

describe('WorkQueue', () => {
  it('holds a key once and hands keys out oldest first', async () => {
    const { queue } = newQueue();
    for (const key of ['a', 'b', 'a', 'c', 'b']) queue.add(key);
    expect(queue.length).toBe(3);
    expect([await queue.get(), await queue.get(), await queue.get()]).toEqual(['a', 'b', 'c']);
    expect(queue.length).toBe(0);
  });

  it('keeps a key added while in flight until done, then hands it out again', async () => {
    const { queue } = newQueue();
    queue.add('a');
    expect(await queue.get()).toBe('a');
    queue.add('a');
    queue.add('a');
    expect(queue.length).toBe(0); // never handed out twice at once
    queue.done('a');
    expect(queue.length).toBe(1);
    expect(await queue.get()).toBe('a');
    queue.done('a');
    expect(queue.length).toBe(0);
  });

  it('wakes a waiting get when a key arrives', async () => {
    const { queue } = newQueue();
    const got = queue.get();
    queue.add('x');
    expect(await got).toBe('x');
  });

  it('adds after a delay; the earlier of two delays wins; an add cancels the delayed one', async () => {
    const { queue, time } = newQueue();
    queue.addAfter('a', 100);
    time.advance(99);
    expect(queue.length).toBe(0);
    time.advance(1);
    expect(queue.length).toBe(1);
    expect(await queue.get()).toBe('a');
    queue.done('a');

    queue.addAfter('b', 100);
    queue.addAfter('b', 50);
    queue.addAfter('b', 500); // does not postpone
    time.advance(50);
    expect(queue.length).toBe(1);
    expect(await queue.get()).toBe('b');
    queue.done('b');
    time.advance(1_000);
    expect(queue.length).toBe(0); // the 100 ms and 500 ms adds were folded into the first

    queue.addAfter('c', 100);
    queue.add('c');
    expect(await queue.get()).toBe('c');
    queue.done('c');
    expect(time.pending).toBe(0);
    time.advance(100);
    expect(queue.length).toBe(0);
  });

  it('drops a delayed add of a key that is waiting or re-added in flight (it runs sooner anyway)', async () => {
    const { queue, time } = newQueue();
    queue.add('a');
    queue.addAfter('a', 100);
    expect(time.pending).toBe(0);
    expect(await queue.get()).toBe('a');
    queue.add('a'); // marked while in flight
    queue.addRateLimited('a');
    expect(time.pending).toBe(0);
    queue.done('a');
    expect(queue.length).toBe(1);
  });

  it('backs off per key exponentially and forget resets the backoff', () => {
    const { queue, time } = newQueue();
    expect([queue.addRateLimited('a'), queue.addRateLimited('b')]).toEqual([100, 100]);
    time.advance(100);
    expect(queue.length).toBe(2);
    // Failures are counted per key, whether or not the delayed add was dropped.
    expect([queue.addRateLimited('a'), queue.addRateLimited('a'), queue.addRateLimited('a'), queue.addRateLimited('a')]).toEqual([
      200, 400, 800, 1_000,
    ]);
    expect(queue.numRequeues('a')).toBe(5);
    expect(queue.numRequeues('b')).toBe(1);
    queue.forget('a');
    expect(queue.numRequeues('a')).toBe(0);
    expect(queue.addRateLimited('a')).toBe(100);
  });

  it('shutDown ends waiting and later gets, ignores adds and cancels delayed adds', async () => {
    const { queue, time } = newQueue();
    const waiting = queue.get();
    queue.addAfter('late', 100);
    queue.shutDown();
    expect(await waiting).toBeUndefined();
    queue.add('a');
    time.advance(100);
    expect(queue.length).toBe(0);
    expect(await queue.get()).toBeUndefined();
    expect(queue.isShuttingDown).toBe(true);
  });

  it('whenIdle resolves once nothing is waiting or in flight', async () => {
    const { queue } = newQueue();
    await queue.whenIdle();
    queue.add('a');
    let idle = false;
    void queue.whenIdle().then(() => (idle = true));
    const key = (await queue.get())!;
    await until(() => true);
    expect(idle).toBe(false);
    queue.done(key);
    await until(() => idle, 'idle');
  });

  it('runs up to `concurrency` different keys at once, never one key twice at once, and reprocesses a key added meanwhile', async () => {
    const { queue } = newQueue();
    const stop = new AbortController();
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const running = new Set<string>();
    const started: string[] = [];
    let peak = 0;
    const run = queue.run(
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
      { signal: stop.signal, concurrency: 3 },
    );
    for (const key of ['a', 'b', 'c', 'd']) queue.add(key);
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
    await queue.whenIdle();
    expect(started).toHaveLength(6);
    expect(peak).toBe(3);
    stop.abort();
    await run;
  });

  it('retries a failing key with backoff until it succeeds, then forgets its failures', async () => {
    const { queue, time } = newQueue();
    const stop = new AbortController();
    let calls = 0;
    const run = queue.run(
      // eslint-disable-next-line @typescript-eslint/require-await -- a fake reconcile
      async () => {
        calls++;
        if (calls < 3) throw new Error('transient');
      },
      { signal: stop.signal },
    );
    queue.add('a');
    await until(() => calls === 1 && time.pending === 1, 'first failure');
    expect(queue.numRequeues('a')).toBe(1);
    time.advance(99);
    await until(() => true);
    expect(calls).toBe(1);
    time.advance(1);
    await until(() => calls === 2 && time.pending === 1, 'second failure');
    time.advance(199);
    await until(() => true);
    expect(calls).toBe(2);
    time.advance(1);
    await until(() => calls === 3, 'success');
    await queue.whenIdle();
    expect(queue.numRequeues('a')).toBe(0);
    stop.abort();
    await run;
  });

  it('reports each run to onProcessed with its duration on the queue clock and its outcome', async () => {
    const { queue, time } = newQueue();
    const stop = new AbortController();
    const gate = deferred();
    const processed: Array<[string, number, string]> = [];
    const run = queue.run(
      async (key) => {
        await gate.promise;
        if (key === 'bad') throw new Error('transient');
      },
      { signal: stop.signal, concurrency: 2, onProcessed: (key, durationMs, outcome) => processed.push([key, durationMs, outcome]) },
    );
    queue.add('good');
    queue.add('bad');
    await until(() => queue.length === 0, 'both handed out');
    time.advance(250);
    gate.resolve();
    await until(() => processed.length === 2, 'both reported');
    expect(processed.sort()).toEqual([
      ['bad', 250, 'error'],
      ['good', 250, 'success'],
    ]);
    stop.abort();
    await run;
  });

  it('stops on abort: the handler sees the signal, a cancelled key is not retried, nothing runs afterwards', async () => {
    const { queue, time } = newQueue();
    const stop = new AbortController();
    let calls = 0;
    let sawAbort = false;
    const run = queue.run(
      async (_key, signal) => {
        calls++;
        await new Promise<void>((_resolve, reject) =>
          signal.addEventListener('abort', () => {
            sawAbort = true;
            reject(new DOMException('stopped', 'AbortError'));
          }),
        );
      },
      { signal: stop.signal, concurrency: 2 },
    );
    queue.add('a');
    await until(() => calls === 1);
    stop.abort();
    await run;
    expect(sawAbort).toBe(true);
    expect(time.pending).toBe(0);
    queue.add('b');
    expect(queue.length).toBe(0);
    expect(calls).toBe(1);
  });
});

describe('rate limiters', () => {
  it('the bucket lets `burst` retries through at once, then spaces them by 1/perSecond', () => {
    const time = new FakeTime();
    const bucket = new BucketRateLimiter({ perSecond: 2, burst: 2, time });
    expect([bucket.when('a'), bucket.when('b'), bucket.when('c'), bucket.when('d')]).toEqual([0, 0, 500, 1_000]);
    time.advance(1_500); // the reserved tokens are paid back, one is free again
    expect([bucket.when('e'), bucket.when('f')]).toEqual([0, 500]);
  });

  it('MaxOf takes the longest delay and forgets in every limiter', () => {
    const time = new FakeTime();
    const limiter = new MaxOfRateLimiter(
      new ItemExponentialRateLimiter({ baseDelayMs: 10, jitter: 0 }),
      new BucketRateLimiter({ perSecond: 1, burst: 1, time }),
    );
    expect(limiter.when('a')).toBe(10);
    expect(limiter.when('a')).toBe(1_000); // the bucket is empty: 1 s beats the item's 20 ms
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
  });

  it('the item limiter applies jitter within ±jitter and caps at maxDelayMs', () => {
    const low = new ItemExponentialRateLimiter({ baseDelayMs: 1_000, maxDelayMs: 4_000, random: () => 0 });
    const high = new ItemExponentialRateLimiter({ baseDelayMs: 1_000, maxDelayMs: 4_000, random: () => 0.999_999 });
    expect([low.when('k'), low.when('k'), low.when('k'), low.when('k')]).toEqual([800, 1_600, 3_200, 3_200]);
    expect(high.when('k')).toBe(1_200);
  });
});
