// Maps every error to the Status envelope (Kubernetes API conventions, "Response Status Kind").
import { InvalidError, WarrenError, type ErrorCause } from '@warren/base';
import { REASONS, makeStatus, type Reason, type Status } from '@warren/api';
import type { z } from 'zod';

/**
 * Formats a zod issue path as a field path: object keys joined by dots, array indices in brackets
 * (`spec.ports[0].port`), the form Kubernetes uses in its field errors.
 */
export function fieldPath(path: ReadonlyArray<PropertyKey>, prefix = ''): string {
  let out = prefix;
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

/**
 * Turns zod issues into Status causes, one per offending field. An unknown key becomes a cause naming the key
 * itself (`spec.foo: unknown field`), not its parent object.
 */
export function zodCauses(error: z.ZodError, prefix = ''): ErrorCause[] {
  const causes: ErrorCause[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) causes.push({ field: fieldPath([...issue.path, key], prefix), message: 'unknown field' });
    } else {
      causes.push({ field: fieldPath(issue.path, prefix) || '(body)', message: issue.message });
    }
  }
  return causes;
}

/**
 * Parses `value` with `schema`.
 * @returns the parsed (defaults applied) value.
 * @throws {InvalidError} 422 `Invalid` whose causes name each bad field (prefixed with `prefix`).
 */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string, prefix = ''): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const causes = zodCauses(result.error, prefix);
  const first = causes[0];
  const summary = first ? `${first.field}: ${first.message}` : 'invalid';
  throw new InvalidError(`${what} is invalid: ${summary}${causes.length > 1 ? ` (and ${causes.length - 1} more)` : ''}`, causes);
}

/** Fastify's own errors carry an HTTP `statusCode` and an `FST_*` code. */
interface HttpishError {
  statusCode?: number;
  code?: string;
  message?: string;
}

const REASON_BY_CODE: Record<number, Reason> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Gone',
  413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

/**
 * Maps any thrown value to a Status.
 * - WarrenError: its reason, code, message and causes.
 * - Fastify client errors (bad JSON → 400, body too large → 413, content type → 415, ...): the reason for the code.
 * - Anything else: `InternalError` 500 with a message that names the request id and no stack or detail;
 *   `internal` is true so the caller logs the error.
 */
export function statusFromError(error: unknown, requestId: string): { status: Status; internal: boolean } {
  if (error instanceof WarrenError) {
    const code = error.code >= 400 && error.code <= 599 ? error.code : ((REASONS as Record<string, number>)[error.reason] ?? 500);
    return { status: makeStatus(error.reason, error.message, error.causes, code), internal: code >= 500 };
  }
  const httpish = error as HttpishError | undefined;
  const statusCode = httpish?.statusCode;
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    const reason = REASON_BY_CODE[statusCode] ?? 'BadRequest';
    return { status: makeStatus(reason, clientMessage(httpish, reason), undefined, statusCode), internal: false };
  }
  return {
    status: makeStatus('InternalError', `internal error (request id ${requestId}); the server log has the details`),
    internal: true,
  };
}

function clientMessage(error: HttpishError | undefined, reason: string): string {
  switch (error?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'request body is larger than the server accepts (1 MiB by default)';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported content type; send application/json (or application/merge-patch+json for PATCH)';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'request body is empty but the content type says JSON';
    case undefined:
    default:
      if (reason === 'BadRequest' && error?.message) return `malformed request: ${error.message}`;
      return error?.message ?? reason;
  }
}
