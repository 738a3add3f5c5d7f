// Errors of the image store and registry client. Each carries a wire `reason` so the runner can put
// it on the Environment's ImageReady condition, and names the image reference so users can act on it.
// Retryable or not follows the HTTP code (@warren/base isRetryableCode) except where a class says otherwise.
import { WarrenError } from '@warren/base';

/**
 * An image reference does not follow Docker's reference grammar
 * (github.com/distribution/reference, regexp.go). HTTP 422, reason `InvalidImageReference`.
 */
export class InvalidReferenceError extends WarrenError {
  constructor(
    readonly reference: string,
    detail: string,
  ) {
    super('InvalidImageReference', 422, `invalid image reference "${reference}": ${detail}`, {
      causes: [{ field: 'image', message: detail }],
    });
  }
}

/** The registry (or every mirror and the registry) could not be reached: DNS, connection, TLS or 5xx. HTTP 502. */
export class RegistryUnreachableError extends WarrenError {
  constructor(
    readonly reference: string,
    readonly registry: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('RegistryUnreachable', 502, `cannot pull "${reference}": registry ${registry} unreachable: ${detail}`, options);
  }
}

/** The registry answered 404 (MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN) for the image or one of its blobs. HTTP 404. */
export class ImageNotFoundError extends WarrenError {
  constructor(
    readonly reference: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('ImageNotFound', 404, `image "${reference}" not found: ${detail}`, options);
  }
}

/** The registry or its token server refused our credentials (or anonymous access). HTTP 401. */
export class RegistryUnauthorizedError extends WarrenError {
  constructor(
    readonly reference: string,
    readonly registry: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('RegistryUnauthorized', 401, `cannot pull "${reference}": unauthorized at ${registry}: ${detail}`, options);
  }
}

/**
 * Content did not hash to its digest (OCI image spec descriptor.md "Digests": consumers MUST verify).
 * HTTP 502: the source served corrupt or substituted data.
 */
export class DigestMismatchError extends WarrenError {
  constructor(
    readonly reference: string,
    readonly expected: string,
    readonly actual: string,
    what: string,
  ) {
    super('DigestMismatch', 502, `image "${reference}": ${what} ${expected} does not match its content (got ${actual})`);
  }
}

/** An image index has no manifest for the host platform (OCI image spec image-index.md `platform`). HTTP 422. */
export class NoMatchingPlatformError extends WarrenError {
  constructor(
    readonly reference: string,
    readonly wanted: string,
    readonly available: string[],
  ) {
    super(
      'ImagePlatformNotFound',
      422,
      `image "${reference}" has no manifest for platform ${wanted} (available: ${available.join(', ') || 'none'})`,
    );
  }
}

/**
 * A manifest, config or layer is malformed or has a media type we do not support. HTTP 422, yet retryable:
 * the document may have been cut short or served wrong by a mirror or proxy, and the runner has always
 * retried it (only the errors of the registry's own answers below say "no retry can help").
 */
export class InvalidImageError extends WarrenError {
  constructor(
    readonly reference: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('InvalidImage', 422, `image "${reference}" is invalid: ${detail}`, { ...options, retryable: true });
  }
}

/** The registry answered with a status we do not expect (e.g. 400, 429). HTTP 502. */
export class RegistryError extends WarrenError {
  constructor(
    readonly reference: string,
    readonly registry: string,
    readonly status: number,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('RegistryError', 502, `cannot pull "${reference}": ${registry} answered ${status}: ${detail}`, options);
  }
}
