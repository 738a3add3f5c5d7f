// Error classes shared by every package. Each user-facing error carries a wire `reason`
// (see @warren/api's Status registry) so the server can map it to a Status envelope.

/** One field-level cause of a failure: `field` is a dotted JSON path such as `spec.source.git.url`. */
export interface ErrorCause {
  field: string;
  message: string;
}

/**
 * Base class for expected errors (bad input, missing objects, conflicts).
 * `reason` is a CamelCase token from the Status reason registry; `code` the HTTP status it maps to.
 */
export class WarrenError extends Error {
  readonly reason: string;
  readonly code: number;
  readonly causes: ErrorCause[];

  constructor(reason: string, code: number, message: string, options?: { causes?: ErrorCause[]; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.reason = reason;
    this.code = code;
    this.causes = options?.causes ?? [];
  }
}

/** A request or configuration is invalid; `causes` names each offending field. HTTP 400/422. */
export class InvalidError extends WarrenError {
  constructor(message: string, causes: ErrorCause[] = [], reason = 'Invalid', code = 422) {
    super(reason, code, message, { causes });
  }
}

/** The named object does not exist (or the caller may not see it). HTTP 404. */
export class NotFoundError extends WarrenError {
  constructor(kind: string, idOrName: string) {
    super('NotFound', 404, `${kind} "${idOrName}" not found`);
  }
}

/** A write lost an optimistic-concurrency race or hit a uniqueness rule. HTTP 409. */
export class ConflictError extends WarrenError {
  constructor(message: string, reason = 'Conflict', causes: ErrorCause[] = []) {
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
