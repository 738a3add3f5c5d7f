// @warren/base: tiny shared utilities (errors and the reason registry, logger interface, async helpers, disposables). No I/O.
export { WarrenError, InvalidError, NotFoundError, ConflictError, assert, errorMessage, isRetryable, isRetryableCode } from './errors.js';
export type { ErrorCause, WarrenErrorOptions } from './errors.js';
export { REASONS } from './reasons.js';
export type { Reason } from './reasons.js';
export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
export { sleep, isAbortError, backoffMs, SingleFlight } from './async.js';
export { DisposableStack } from './disposable.js';
