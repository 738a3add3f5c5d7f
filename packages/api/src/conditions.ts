// Helpers for status.conditions (Kubernetes API conventions, "Typical status properties").
import type { Condition } from './resources.js';

/**
 * Returns `conditions` with condition `type` set to the given status/reason/message.
 * `lastTransitionTime` changes only when `status` changes, as the conventions require.
 * Pure: the input array is not modified.
 */
export function setCondition(
  conditions: readonly Condition[],
  type: string,
  status: Condition['status'],
  reason: string,
  message: string,
  now: Date = new Date(),
): Condition[] {
  const existing = conditions.find((condition) => condition.type === type);
  const lastTransitionTime = existing && existing.status === status ? existing.lastTransitionTime : now.toISOString();
  const next: Condition = { type, status, reason, message, lastTransitionTime };
  return existing ? conditions.map((condition) => (condition.type === type ? next : condition)) : [...conditions, next];
}

/** Returns the condition of `type`, or undefined. */
export function getCondition(conditions: readonly Condition[], type: string): Condition | undefined {
  return conditions.find((condition) => condition.type === type);
}

/** True when condition `type` exists with status `True`. */
export function isConditionTrue(conditions: readonly Condition[], type: string): boolean {
  return getCondition(conditions, type)?.status === 'True';
}
