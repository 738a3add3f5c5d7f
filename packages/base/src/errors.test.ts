// The retryable rule: isRetryable and the flag each base error class carries.
import { describe, expect, it } from 'vitest';
import { ConflictError, InvalidError, NotFoundError, WarrenError, isRetryable, isRetryableCode } from './errors.js';

describe('isRetryableCode', () => {
  it('is true for 5xx and 429, false for other 4xx', () => {
    for (const code of [500, 502, 503, 504, 507, 429]) expect(isRetryableCode(code), String(code)).toBe(true);
    for (const code of [400, 401, 403, 404, 405, 409, 410, 413, 415, 422]) expect(isRetryableCode(code), String(code)).toBe(false);
  });
});

describe('isRetryable', () => {
  it('derives a WarrenError flag from its code unless told otherwise', () => {
    expect(isRetryable(new WarrenError('ServiceUnavailable', 503, 'down'))).toBe(true);
    expect(isRetryable(new WarrenError('CommandFailed', 500, 'failed'))).toBe(true);
    expect(isRetryable(new WarrenError('TooManyRequests', 429, 'slow down'))).toBe(true);
    expect(isRetryable(new WarrenError('Forbidden', 403, 'no'))).toBe(false);
    expect(isRetryable(new WarrenError('NotFound', 404, 'gone'))).toBe(false);
    expect(isRetryable(new WarrenError('InternalError', 500, 'bug', { retryable: false }))).toBe(false);
    expect(isRetryable(new WarrenError('Conflict', 409, 'race', { retryable: true }))).toBe(true);
  });

  it('makes the base classes terminal', () => {
    expect(isRetryable(new InvalidError('bad', [{ field: 'spec', message: 'bad' }]))).toBe(false);
    expect(isRetryable(new InvalidError('bad', [], 'BadRequest', 400))).toBe(false);
    expect(isRetryable(new NotFoundError('Environment', 'x'))).toBe(false);
    expect(isRetryable(new ConflictError('stale resourceVersion'))).toBe(false);
    expect(new InvalidError('bad').retryable).toBe(false);
  });

  it('treats anything that is not a WarrenError as transient', () => {
    expect(isRetryable(new Error('ECONNRESET'))).toBe(true);
    expect(isRetryable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isRetryable(new TypeError('fetch failed'))).toBe(true);
    expect(isRetryable(new DOMException('aborted', 'AbortError'))).toBe(true);
    expect(isRetryable('a string')).toBe(true);
    expect(isRetryable(undefined)).toBe(true);
  });
});
