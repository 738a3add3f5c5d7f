// Retry delays of the work queue: per-key exponential backoff and an overall token bucket (client-go's
// workqueue rate limiters: ItemExponentialFailureRateLimiter, BucketRateLimiter, MaxOfRateLimiter).
import { realTimeSource, type TimeSource } from './clock.js';

/** Decides how long a failed key waits before it is processed again (client-go's `workqueue.RateLimiter`). */
export interface RateLimiter {
  /** The delay in milliseconds before `key` is retried; counts one more failure of `key`. */
  when(key: string): number;
  /** Forgets the failures of `key` (after a success), so its next delay starts from the base again. */
  forget(key: string): void;
  /** Failures counted for `key` since its last {@link forget}. */
  numRequeues(key: string): number;
}

/** Options of {@link ItemExponentialRateLimiter}. */
export interface ItemExponentialRateLimiterOptions {
  /** Delay after the first failure, in milliseconds (default 200). */
  baseDelayMs?: number;
  /** Longest delay in milliseconds (default 30 000), before jitter. */
  maxDelayMs?: number;
  /** Each delay is multiplied by a random factor in `[1 - jitter, 1 + jitter]` (default 0.2) so retries of many keys spread out. */
  jitter?: number;
  /** Random numbers in `[0, 1)` (default `Math.random`; tests pass a constant). */
  random?: () => number;
}

/**
 * Per-key exponential backoff: the n-th consecutive failure of a key (0-based) waits
 * `min(maxDelayMs, baseDelayMs * 2^n)`, with jitter; {@link forget} resets the key.
 * The same curve as `backoffMs` of @warren/base.
 */
export class ItemExponentialRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(options: ItemExponentialRateLimiterOptions = {}) {
    this.baseDelayMs = options.baseDelayMs ?? 200;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.jitter = options.jitter ?? 0.2;
    this.random = options.random ?? Math.random;
  }

  when(key: string): number {
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    const raw = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(failures, 30));
    return Math.round(raw * (1 - this.jitter + this.random() * 2 * this.jitter));
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/** Options of {@link BucketRateLimiter}. */
export interface BucketRateLimiterOptions {
  /** Tokens added per second (default 10). */
  perSecond?: number;
  /** Bucket size: retries allowed at once before they are spread out (default 100). */
  burst?: number;
  time?: TimeSource;
}

/**
 * An overall limit on retries of all keys together: a token bucket of `burst` tokens refilled at `perSecond`.
 * Every {@link when} takes a token, reserving a future one when the bucket is empty (so delays queue up, as
 * golang.org/x/time/rate's `Reserve`). Bounds the retry rate when many keys fail at once.
 */
export class BucketRateLimiter implements RateLimiter {
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly time: TimeSource;
  private tokens: number;
  private last: number;

  constructor(options: BucketRateLimiterOptions = {}) {
    this.perSecond = options.perSecond ?? 10;
    this.burst = options.burst ?? 100;
    this.time = options.time ?? realTimeSource;
    this.tokens = this.burst;
    this.last = this.time.now();
  }

  when(_key: string): number {
    const now = this.time.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.perSecond);
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The longest delay of several limiters (client-go's `MaxOfRateLimiter`); each of them counts every failure. */
export class MaxOfRateLimiter implements RateLimiter {
  private readonly limiters: readonly RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(key: string): number {
    return Math.max(0, ...this.limiters.map((limiter) => limiter.when(key)));
  }

  forget(key: string): void {
    for (const limiter of this.limiters) limiter.forget(key);
  }

  numRequeues(key: string): number {
    return Math.max(0, ...this.limiters.map((limiter) => limiter.numRequeues(key)));
  }
}

/**
 * The default limiter of a controller's queue (client-go's `DefaultControllerRateLimiter`, with Warren's
 * delays): per-key exponential backoff (default 200 ms doubling to 30 s, ±20 %) and an overall bucket of
 * 100 retries at once refilled at 10 per second; the longer delay wins.
 */
export function defaultControllerRateLimiter(options: ItemExponentialRateLimiterOptions & BucketRateLimiterOptions = {}): RateLimiter {
  return new MaxOfRateLimiter(new ItemExponentialRateLimiter(options), new BucketRateLimiter(options));
}
