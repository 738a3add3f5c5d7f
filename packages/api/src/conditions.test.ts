import { describe, expect, it } from 'vitest';
import { setCondition } from './conditions.js';

describe('setCondition', () => {
  it('keeps lastTransitionTime while the status does not change', () => {
    const t1 = new Date('2026-01-01T00:00:00Z');
    const t2 = new Date('2026-01-01T00:01:00Z');
    const first = setCondition([], 'Scheduled', 'False', 'NoRunnerAvailable', 'no runner', t1);
    const second = setCondition(first, 'Scheduled', 'False', 'NoRunnerAvailable', 'still none', t2);
    expect(second).toHaveLength(1);
    expect(second[0]!.lastTransitionTime).toBe(t1.toISOString());
    expect(second[0]!.message).toBe('still none');
    const third = setCondition(second, 'Scheduled', 'True', 'RunnerAssigned', 'ok', t2);
    expect(third[0]!.lastTransitionTime).toBe(t2.toISOString());
  });
});
