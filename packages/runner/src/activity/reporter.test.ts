import { describe, expect, it } from 'vitest';
import { type ActivityClock, ActivityReporter } from './reporter.js';

/** A manual clock: timers fire only when the test advances time. */
function manualClock(): ActivityClock & { advance(ms: number): Promise<void> } {
  let now = 0;
  let timers: Array<{ at: number; callback: () => void; cancelled: boolean }> = [];
  return {
    now: () => now,
    setTimer(callback, delayMs) {
      const timer = { at: now + delayMs, callback, cancelled: false };
      timers.push(timer);
      return () => void (timer.cancelled = true);
    },
    async advance(ms) {
      const target = now + ms;
      for (;;) {
        const due = timers.filter((timer) => !timer.cancelled && timer.at <= target).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        now = due.at;
        timers = timers.filter((timer) => timer !== due);
        due.callback();
        await new Promise((resolve) => setImmediate(resolve)); // let sends settle
      }
      now = target;
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

describe('ActivityReporter', () => {
  it('sends at most one update per interval per environment, and never loses the last activity', async () => {
    const clock = manualClock();
    const sent: Array<{ environmentId: string; at: number }> = [];
    const reporter = new ActivityReporter({
      intervalMs: 30_000,
      clock,
      send: (environmentId) => {
        sent.push({ environmentId, at: clock.now() });
        return Promise.resolve();
      },
    });
    // Activity every second for 95 s in env-a, every 7 s in env-b.
    for (let second = 0; second < 95; second++) {
      reporter.record('env-a');
      if (second % 7 === 0) reporter.record('env-b');
      await clock.advance(1_000);
    }
    await clock.advance(60_000);

    for (const environmentId of ['env-a', 'env-b']) {
      const times = sent.filter((entry) => entry.environmentId === environmentId).map((entry) => entry.at);
      // Leading edge at 0, then one trailing send per window: 0, 30, 60, 90, 120 s.
      expect(times).toEqual([0, 30_000, 60_000, 90_000, 120_000]);
      for (let index = 1; index < times.length; index++) expect(times[index]! - times[index - 1]!).toBeGreaterThanOrEqual(30_000);
    }
    // Quiet after the last trailing send: nothing more is sent.
    const count = sent.length;
    await clock.advance(120_000);
    expect(sent.length).toBe(count);
    // Activity after a quiet interval is reported at once.
    reporter.record('env-a');
    await clock.advance(0);
    expect(sent.at(-1)).toEqual({ environmentId: 'env-a', at: clock.now() });
    await reporter.close();
  });

  it('retries a failed send in the next interval and forgets an environment the server does not know', async () => {
    const clock = manualClock();
    const attempts: string[] = [];
    let failures = 1;
    const reporter = new ActivityReporter({
      intervalMs: 10_000,
      clock,
      send: (environmentId) => {
        attempts.push(environmentId);
        if (environmentId === 'gone') return Promise.reject(Object.assign(new Error('not found'), { code: 404 }));
        if (failures-- > 0) return Promise.reject(new Error('server unreachable'));
        return Promise.resolve();
      },
    });
    reporter.record('env-a');
    reporter.record('gone');
    await clock.advance(0);
    expect(attempts).toEqual(['env-a', 'gone']);
    await clock.advance(10_000);
    expect(attempts).toEqual(['env-a', 'gone', 'env-a']);
    await clock.advance(30_000);
    expect(attempts).toEqual(['env-a', 'gone', 'env-a']);
    await reporter.close();
  });

  it('flushes pending activity on close and ignores records after it', async () => {
    const clock = manualClock();
    const sent: string[] = [];
    const reporter = new ActivityReporter({
      intervalMs: 30_000,
      clock,
      send: (id) => {
        sent.push(id);
        return Promise.resolve();
      },
    });
    reporter.record('env-a');
    await clock.advance(1_000);
    reporter.record('env-a'); // pending until the window ends
    expect(sent).toEqual(['env-a']);
    await reporter.close();
    expect(sent).toEqual(['env-a', 'env-a']);
    reporter.record('env-a');
    await clock.advance(60_000);
    expect(sent).toEqual(['env-a', 'env-a']);
  });
});
