// Error classes shared by every package. Each user-facing error carries a wire `reason` from the registry in
// reasons.ts (so the server can map it to a Status envelope) and says whether retrying can help.
import type { Reason } from './reasons.js';

/** One field-level cause of a failure: `field` is a dotted JSON path such as `spec.source.git.url`. */
export interface ErrorCause {
  field: string;
  message: string;
}

/** Options of {@link WarrenError}. */
export interface WarrenErrorOptions {
  /** Field-level causes (become the Status envelope's `details.causes`). */
  causes?: ErrorCause[];
  /** The error this one wraps (`Error.cause`). */
  cause?: unknown;
  /** Whether retrying can help; default {@link isRetryableCode} of the error's `code`. */
  retryable?: boolean;
}

/**
 * Whether a failure with HTTP status `code` may succeed when the same request is made again, unchanged:
 * true for 5xx (the server or something behind it failed) and 429 (RFC 6585 §4: too many requests, retry
 * later); false for the other 4xx, which the caller must fix first (RFC 9110 §15.5: "the client seems to have
 * erred"). 409 and 410 are false too: the same request conflicts again; the caller must read again first.
 */
export function isRetryableCode(code: number): boolean {
  return code >= 500 || code === 429;
}

/**
 * Base class for expected errors (bad input, missing objects, conflicts, failures of a tool or a peer).
 * `reason` is a CamelCase token from the registry ({@link Reason}); `code` the HTTP status it maps to;
 * `retryable` says whether the same operation may succeed later without a change by the user (see
 * {@link isRetryable}): by default derived from `code` ({@link isRetryableCode}), set by a subclass where
 * its kind of failure says otherwise, or per instance through `options.retryable`.
 */
export class WarrenError extends Error {
  readonly reason: Reason;
  readonly code: number;
  readonly causes: ErrorCause[];
  readonly retryable: boolean;

  constructor(reason: Reason, code: number, message: string, options?: WarrenErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.reason = reason;
    this.code = code;
    this.causes = options?.causes ?? [];
    this.retryable = options?.retryable ?? isRetryableCode(code);
  }
}

/**
 * Whether retrying the operation that threw `error` can help: the one rule for retryable vs terminal.
 * - A {@link WarrenError}: its `retryable` flag (derived from its code unless its class or the thrower says
 *   otherwise).
 * - Anything else (a network or file system error, an abort, an error of a library): true. An error we did not
 *   classify is assumed to be transient, so a reconciler retries it with backoff rather than giving up.
 * Reconcilers turn a non-retryable error into a `False` condition and do not retry it until the spec changes
 * (STYLE.md "Errors"); an abort is handled before this question is asked.
 */
export function isRetryable(error: unknown): boolean {
  return !(error instanceof WarrenError) || error.retryable;
}

/** A request or configuration is invalid; `causes` names each offending field. HTTP 400/422. Not retryable. */
export class InvalidError extends WarrenError {
  constructor(message: string, causes: ErrorCause[] = [], reason: Reason = 'Invalid', code = 422) {
    super(reason, code, message, { causes, retryable: false });
  }
}

/** The named object does not exist (or the caller may not see it). HTTP 404. Not retryable. */
export class NotFoundError extends WarrenError {
  constructor(kind: string, idOrName: string) {
    super('NotFound', 404, `${kind} "${idOrName}" not found`);
  }
}

/**
 * A write lost an optimistic-concurrency race or hit a uniqueness rule. HTTP 409. Not retryable as it is: the
 * caller reads the object again and applies its change to the fresh version.
 */
export class ConflictError extends WarrenError {
  constructor(message: string, reason: Reason = 'Conflict', causes: ErrorCause[] = []) {
    super(reason, 409, message, { causes });
  }
}

/**
 * Asserts an internal invariant. Use only for bugs, never for bad input.
 * @throws {Error} with `message` when `condition` is falsy.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

/** Returns `error.message` for an Error, or a string form of anything else that was thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
