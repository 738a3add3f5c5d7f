// The time source of the controllers, injectable so tests can move time without waiting.

/** A source of "now". */
export interface Clock {
  now(): Date;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => new Date() };
