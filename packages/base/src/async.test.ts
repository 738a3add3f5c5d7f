import { describe, expect, it } from 'vitest';
import { SingleFlight, backoffMs, sleep } from './async.js';

describe('SingleFlight', () => {
  it('shares one run between concurrent callers of one key', async () => {
    const flight = new SingleFlight<number>();
    let runs = 0;
    const work = async () => {
      runs++;
      await sleep(10);
      return runs;
    };
    const [a, b] = await Promise.all([flight.do('k', work), flight.do('k', work)]);
    expect(runs).toBe(1);
    expect(a).toBe(1);
    expect(b).toBe(1);
    await flight.do('k', work);
    expect(runs).toBe(2);
  });
});

describe('backoffMs', () => {
  it('grows and is capped', () => {
    expect(backoffMs(0, 100, 1000)).toBeLessThanOrEqual(120);
    expect(backoffMs(10, 100, 1000)).toBeLessThanOrEqual(1200);
    expect(backoffMs(10, 100, 1000)).toBeGreaterThanOrEqual(800);
  });
});

describe('sleep', () => {
  it('rejects when aborted', async () => {
    const controller = new AbortController();
    const pending = sleep(10_000, controller.signal);
    controller.abort();
    await expect(pending).rejects.toThrow();
  });
});
