/**
 * Run ids: 10 characters of lowercase Crockford base32 (50 random bits). Short enough for branch names
 * (`secd-<stamp>-<id>`), random so two leaders or a restored database never reuse one. What counts as
 * a run id where one arrives is scheduler/contract/run-id.ts's RUN_ID_PATTERN, of which these are a
 * subset (the pattern lives there because the wire checks it and storage imports nothing of the
 * scheduler; run-id.test.ts holds the two together).
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
