/* eslint-disable @typescript-eslint/require-await -- fakes of async interfaces */
import { sleep } from '@warren/base';
import { describe, expect, it } from 'vitest';
import { WorkQueue } from './work-queue.js';

/** Polls `predicate` until true (the queue's retries run on timers). */
async function until(predicate: () => boolean): Promise<void> {
  for (let attempt = 0; attempt < 500 && !predicate(); attempt++) await sleep(5);
  expect(predicate()).toBe(true);
}

describe('WorkQueue', () => {
  it('updates the latest item of a known key without processing it again, and ignores unknown keys', async () => {
    const seen: string[] = [];
    const queue = new WorkQueue<string>({ concurrency: 1, process: async (key, item) => void seen.push(`${key}=${item}`) });
    queue.add('a', '1');
    await queue.idle();
    queue.update('a', '2');
    queue.update('b', '1');
    await queue.idle();
    expect(seen).toEqual(['a=1']);
    expect(queue.latest('a')).toBe('2');
    expect(queue.latest('b')).toBeUndefined();
    await queue.close();
  });

  it('processes only the latest item of a key added several times while queued', async () => {
    const seen: string[] = [];
    const queue = new WorkQueue<string>({ concurrency: 1, process: async (key, item) => void seen.push(`${key}=${item}`) });
    queue.add('blocker', 'x');
    queue.add('a', '1');
    queue.add('a', '2');
    queue.add('a', '3');
    await queue.idle();
    expect(seen).toEqual(['blocker=x', 'a=3']);
    await queue.close();
  });

  it('never runs one key twice at once, and re-runs it with the newest item after an add during processing', async () => {
    let active = 0;
    let maxActive = 0;
    const seen: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const queue = new WorkQueue<number>({
      concurrency: 4,
      process: async (_key, item) => {
        active++;
        maxActive = Math.max(maxActive, active);
        if (item === 1) await gate;
        seen.push(item);
        active--;
      },
    });
    queue.add('a', 1);
    await until(() => active === 1);
    queue.add('a', 2);
    queue.add('a', 3);
    release();
    await until(() => seen.length === 2);
    await queue.idle();
    expect(seen).toEqual([1, 3]);
    expect(maxActive).toBe(1);
    await queue.close();
  });

  it('bounds parallelism across keys', async () => {
    let active = 0;
    let maxActive = 0;
    const queue = new WorkQueue<number>({
      concurrency: 2,
      process: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(5);
        active--;
      },
    });
    for (let index = 0; index < 8; index++) queue.add(`k${index}`, index);
    await queue.idle();
    expect(maxActive).toBe(2);
    await queue.close();
  });

  it('retries a failing key with backoff until it succeeds, then resets its failure count', async () => {
    let calls = 0;
    const queue = new WorkQueue<string>({
      baseDelayMs: 1,
      maxDelayMs: 5,
      process: async () => {
        calls++;
        if (calls < 3) throw new Error('transient');
      },
    });
    queue.add('a', 'x');
    await until(() => calls === 3);
    await queue.idle();
    expect(queue.failureCount('a')).toBe(0);
    await queue.close();
  });

  it('aborts running work on close and runs nothing afterwards', async () => {
    let aborted = false;
    let calls = 0;
    const queue = new WorkQueue<string>({
      process: async (_key, _item, signal) => {
        calls++;
        await sleep(60_000, signal).catch((error: unknown) => {
          aborted = true;
          throw error;
        });
      },
    });
    queue.add('a', 'x');
    await until(() => calls === 1);
    await queue.close();
    expect(aborted).toBe(true);
    queue.add('b', 'y');
    await sleep(10);
    expect(calls).toBe(1);
  });
});
