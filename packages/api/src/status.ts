// The Status envelope every API error uses, and the registry of `reason` values (Kubernetes
// API conventions: "Response Status Kind").
import { WarrenError, type ErrorCause } from '@warren/base';
import { z } from 'zod';

/**
 * Registry of wire reasons: each maps to its HTTP code. Reasons used only inside conditions
 * (not as HTTP errors) carry the code they would have as an error.
 */
export const REASONS = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  AlreadyExists: 409,
  Conflict: 409,
  Gone: 410,
  RequestEntityTooLarge: 413,
  UnsupportedMediaType: 415,
  Invalid: 422,
  InvalidGitUrl: 422,
  InvalidDevcontainerConfig: 422,
  TooManyRequests: 429,
  InternalError: 500,
  ServiceUnavailable: 503,
  Timeout: 504,
} as const satisfies Record<string, number>;

/** A reason from {@link REASONS}. */
export type Reason = keyof typeof REASONS;

/** Zod schema of the Status envelope: `{kind:"Status", apiVersion, code, reason, message, details?}`. */
export const StatusSchema = z.object({
  kind: z.literal('Status'),
  apiVersion: z.literal('v1'),
  code: z.number().int(),
  reason: z.string(),
  message: z.string(),
  details: z
    .object({
      kind: z.string().optional(),
      name: z.string().optional(),
      causes: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
    })
    .optional(),
});

/** The error envelope of every failed API call. */
export type Status = z.infer<typeof StatusSchema>;

/** Builds a Status envelope for `reason` (code taken from the registry unless given). */
export function makeStatus(reason: string, message: string, causes?: ErrorCause[], code?: number): Status {
  const resolved = code ?? (REASONS as Record<string, number>)[reason] ?? 500;
  return {
    kind: 'Status',
    apiVersion: 'v1',
    code: resolved,
    reason,
    message,
    ...(causes && causes.length > 0 ? { details: { causes } } : {}),
  };
}

/**
 * An API call failed with a Status envelope (thrown by the client).
 * `status` is the envelope; `code`/`reason`/`causes` mirror it.
 */
export class ApiError extends WarrenError {
  readonly status: Status;

  constructor(status: Status) {
    super(status.reason, status.code, status.message, { causes: status.details?.causes ?? [] });
    this.status = status;
  }
}

/**
 * One-line human form of a Status: the message, plus each cause as `field: message`.
 * The CLI prints this for a failed command.
 */
export function formatStatus(status: Status): string {
  const causes = status.details?.causes ?? [];
  const extra = causes
    .filter((cause) => !status.message.includes(cause.message))
    .map((cause) => `${cause.field}: ${cause.message}`)
    .join('; ');
  return extra ? `${status.message} (${extra})` : status.message;
}
