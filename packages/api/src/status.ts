// The Status envelope every API error uses (Kubernetes API conventions: "Response Status Kind"), and the
// registry of `reason` values, which lives in @warren/base (so WarrenError can be typed by it) and is re-exported here.
import { REASONS, WarrenError, isRetryableCode, type ErrorCause, type Reason } from '@warren/base';
import { z } from 'zod';

export { REASONS, type Reason };

/** Zod schema of the Status envelope: `{kind:"Status", apiVersion, code, reason, message, details?}`. */
export const StatusSchema = z.object({
  kind: z.literal('Status'),
  apiVersion: z.literal('v1'),
  code: z.number().int(),
  // Any string is accepted (a newer peer may send a reason this build does not list: it passes through
  // unchanged); typed as a Reason because every reason Warren itself sends is one.
  reason: z.custom<Reason>((value) => typeof value === 'string'),
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

/**
 * Builds a Status envelope for `reason` (code taken from the registry unless given; 500 for a reason received
 * from a peer that this build does not list).
 */
export function makeStatus(reason: Reason, message: string, causes?: ErrorCause[], code?: number): Status {
  const resolved = code ?? (REASONS as Record<string, number | undefined>)[reason] ?? 500;
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
 * `status` is the envelope; `code`/`reason`/`causes` mirror it. Retryable when its code is 5xx or 429
 * ({@link isRetryableCode}: the server failed or asked to slow down) or its reason is `ServiceUnavailable` or
 * `Timeout` (the server could not be reached, or did not answer in time), whatever the code.
 */
export class ApiError extends WarrenError {
  readonly status: Status;

  constructor(status: Status) {
    super(status.reason, status.code, status.message, {
      causes: status.details?.causes ?? [],
      retryable: isRetryableCode(status.code) || status.reason === 'ServiceUnavailable' || status.reason === 'Timeout',
    });
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
