// Status envelopes and ApiError: codes from the registry, and which API failures are retryable.
import { isRetryable } from '@warren/base';
import { describe, expect, it } from 'vitest';
import { ApiError, REASONS, StatusSchema, makeStatus } from './status.js';

describe('makeStatus', () => {
  it('takes the code from the registry unless one is given', () => {
    expect(makeStatus('RepositoryNotFound', 'no repo')).toMatchObject({ code: REASONS.RepositoryNotFound, reason: 'RepositoryNotFound' });
    expect(makeStatus('ServiceUnavailable', 'nothing listens', undefined, 502).code).toBe(502);
  });

  it('lets a reason this build does not list pass through a decoded envelope', () => {
    const status = StatusSchema.parse({
      kind: 'Status',
      apiVersion: 'v1',
      code: 418,
      reason: 'SomethingNewer',
      message: 'from a newer server',
    });
    expect(status.reason).toBe('SomethingNewer');
    expect(makeStatus(status.reason, status.message).code).toBe(500);
  });
});

describe('ApiError', () => {
  it('is retryable for 5xx, 429 and an unreachable or slow server', () => {
    expect(isRetryable(new ApiError(makeStatus('InternalError', 'boom')))).toBe(true);
    expect(isRetryable(new ApiError(makeStatus('TooManyRequests', 'slow down')))).toBe(true);
    expect(isRetryable(new ApiError(makeStatus('ServiceUnavailable', 'cannot reach the server')))).toBe(true);
    expect(isRetryable(new ApiError(makeStatus('Timeout', 'no answer')))).toBe(true);
    expect(isRetryable(new ApiError(makeStatus('ServiceUnavailable', 'odd code', undefined, 400)))).toBe(true);
  });

  it('is terminal for the other 4xx, whatever the reason registry says', () => {
    for (const reason of ['BadRequest', 'Unauthorized', 'Forbidden', 'NotFound', 'AlreadyExists', 'Conflict', 'Gone', 'Invalid'] as const) {
      expect(isRetryable(new ApiError(makeStatus(reason, reason))), reason).toBe(false);
    }
    // A non-Status error body is synthesised as InternalError with the answer's code (client.ts readStatus).
    expect(isRetryable(new ApiError(makeStatus('InternalError', 'server answered HTTP 400', undefined, 400)))).toBe(false);
  });
});
