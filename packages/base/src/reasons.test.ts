// The reason registry: every entry is a CamelCase reason with an HTTP error code. (That every reason used in
// the code is registered is checked by the compiler: WarrenError and makeStatus take a Reason.)
import { describe, expect, it } from 'vitest';
import { REASONS, type Reason } from './reasons.js';

/**
 * The 4xx and 5xx codes of the IANA HTTP Status Code Registry (RFC 9110 §15.5-15.6, RFC 6585 for 428/429/431/511,
 * RFC 4918 for 422-424/507, RFC 8470 for 425, RFC 7725 for 451, RFC 5842 for 508, RFC 2774 for 510).
 */
const HTTP_ERROR_CODES = new Set([
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 423, 424, 425, 426, 428, 429, 431,
  451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

describe('REASONS', () => {
  const entries = Object.entries(REASONS) as [Reason, number][];

  it('maps each reason to an HTTP error status code (4xx or 5xx, registered with IANA)', () => {
    expect(entries.length).toBeGreaterThan(50);
    for (const [reason, code] of entries) {
      expect.soft(HTTP_ERROR_CODES.has(code), `${reason}: ${code} is not an HTTP error status code`).toBe(true);
    }
  });

  it('names reasons in CamelCase (Kubernetes API conventions)', () => {
    for (const [reason] of entries) expect.soft(reason).toMatch(/^[A-Z][a-z]+(?:[A-Z][a-z]*)*$/);
  });

  it('keeps the HTTP reasons the server maps its own status codes to', () => {
    expect(REASONS).toMatchObject({
      BadRequest: 400,
      Unauthorized: 401,
      NotFound: 404,
      Conflict: 409,
      Gone: 410,
      Invalid: 422,
      InternalError: 500,
    });
  });
});
