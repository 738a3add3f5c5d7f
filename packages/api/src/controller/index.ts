// The controller kit shared by the server's controllers and the runner: a work queue of keys with rate-limited
// retries, and informers (list + watch + cache + resync) whose events pass predicates (docs/design/0009).
export { realTimeSource, delay } from './clock.js';
export type { TimeSource, TimerHandle } from './clock.js';
export { ItemExponentialRateLimiter, BucketRateLimiter, MaxOfRateLimiter, defaultControllerRateLimiter } from './rate-limiter.js';
export type { RateLimiter, ItemExponentialRateLimiterOptions, BucketRateLimiterOptions } from './rate-limiter.js';
export { WorkQueue } from './work-queue.js';
export type { WorkQueueOptions, WorkQueueRunOptions } from './work-queue.js';
export { Informer } from './informer.js';
export type {
  InformerObject,
  ListResult,
  ListerWatcher,
  InformerEvent,
  InformerEventHandler,
  EventPredicate,
  InformerOptions,
} from './informer.js';
export { changedPredicate, generationChangedPredicate } from './predicates.js';
