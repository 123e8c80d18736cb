/**
 * Run ids: 10 characters of lowercase base32 (50 random bits). Short enough for branch names
 * (`secd-<stamp>-<id>`), random so two leaders or a restored database never reuse one.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

/** A fresh random run id. */
export function newRunId(): string {
  const bytes = randomBytes(10);
  let id = '';
  for (const b of bytes) id += ALPHABET[b & 31];
  return id;
}

/** Whether `text` looks like a run id (used to validate API paths). */
export function isRunId(text: string): boolean {
  return /^[0-9a-hjkmnp-tv-z]{10}$/.test(text);
}
