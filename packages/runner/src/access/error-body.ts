// The access clients' one decoder of a runner's refusal: an HTTP answer's Status body (or, failing that, its code)
// as an ApiError.
import { ApiError, StatusSchema, makeStatus } from '@warren/api';

/**
 * Builds an ApiError from a Status body, or from the HTTP code when the body is not a Status.
 * @param code the HTTP status code; @param body the answer's body text.
 * @returns the body's Status, else `Unauthorized` (for 401) or `InternalError` naming the code and the body's first
 *   200 characters, with `code` as the Status code.
 */
export function errorFromBody(code: number, body: string): ApiError {
  try {
    const parsed = StatusSchema.safeParse(JSON.parse(body));
    if (parsed.success) return new ApiError(parsed.data);
  } catch {
    // not JSON
  }
  return new ApiError(
    makeStatus(
      code === 401 ? 'Unauthorized' : 'InternalError',
      `runner answered HTTP ${code}${body ? `: ${body.slice(0, 200)}` : ''}`,
      undefined,
      code,
    ),
  );
}
