// JSON Merge Patch (RFC 7396).

/** True for a JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Applies `patch` to `target` as RFC 7396 §2 defines: objects merge recursively, `null` removes a member,
 * anything else (arrays included) replaces. Pure: neither argument is modified.
 * @returns the patched value.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isJsonObject(patch)) return patch;
  const result: Record<string, unknown> = isJsonObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}

/**
 * Returns `value` with every object member whose value is `null` removed (recursively), so a merge patch
 * can be type-checked against a schema that has no nulls.
 */
export function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (!isJsonObject(value)) return value;
  const result: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) {
    if (member !== null) result[key] = withoutNulls(member);
  }
  return result;
}
