// @warren/base: tiny shared utilities (errors, logger interface, async helpers, disposables). No I/O.
export { WarrenError, InvalidError, NotFoundError, ConflictError, assert, errorMessage } from './errors.js';
export type { ErrorCause } from './errors.js';
export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
export { sleep, isAbortError, backoffMs, SingleFlight } from './async.js';
export { DisposableStack } from './disposable.js';
