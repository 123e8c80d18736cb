/** Comparing a presented secret (a webhook token, a read token) with the configured one. */
import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Whether `given` is `expected`, in constant time. Compares digests rather than the strings:
 * timingSafeEqual needs equal lengths, and comparing lengths first would tell a caller how long the
 * secret is.
 */
export function secretsEqual(given: string | Buffer, expected: string | Buffer): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

function sha256(data: string | Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}
