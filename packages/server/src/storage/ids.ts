// Object ids: `<prefix>-<16 lowercase base32 chars>` (80 random bits, RFC 4648 §6 alphabet, lowercased).
import { randomBytes } from 'node:crypto';
import type { Kind } from '@warren/api';

/** Id prefix per kind: `env-`, `run-`, `cls-`, `usr-`, `tok-`. */
export const ID_PREFIXES: Record<Kind, string> = {
  Environment: 'env',
  Runner: 'run',
  EnvironmentClass: 'cls',
  User: 'usr',
  Token: 'tok',
};

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

/**
 * Returns a new random id for `kind`, e.g. `env-k3j5q2x7m4n6p8r2`.
 * 10 random bytes = 80 bits = exactly 16 base32 characters (RFC 4648 §6), so there is no padding.
 */
export function newObjectId(kind: Kind): string {
  const bytes = randomBytes(10);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff; // only the low `bits` (< 13) bits are still needed
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return `${ID_PREFIXES[kind]}-${out}`;
}
