// Test helpers of the controller kit: a time source moved by hand, and a wait for asynchronous effects.
import type { TimerHandle, TimeSource } from './clock.js';

/** A {@link TimeSource} whose time only moves with {@link advance}; timers fire in order of their due time. */
export class FakeTime implements TimeSource {
  private current = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; callback: () => void }>();

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { at: this.current + Math.max(0, delayMs), callback });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first (ties: in creation order). */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let due: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.timers) if (entry[1].at <= target && (!due || entry[1].at < due[1].at)) due = entry;
      if (!due) break;
      this.timers.delete(due[0]);
      this.current = due[1].at;
      due[1].callback();
    }
    this.current = target;
  }
}

/**
 * Lets pending promise callbacks and I/O run until `predicate` holds (at most `rounds` macrotask turns).
 * @throws {Error} naming `what` when it never holds.
 */
export async function until(predicate: () => boolean, what = 'condition', rounds = 1_000): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    if (predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  if (!predicate()) throw new Error(`never true: ${what}`);
}
