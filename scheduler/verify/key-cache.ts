/**
 * Parsed GPG keys of GitLab users, kept between pushes. Reading an armored key block with openpgp is
 * the costly part of loading a project's keyring (a few milliseconds a key, every member, every
 * push); GitLab's answer itself is still asked for on every push, so a key a member removed or added
 * counts at once. A user's parsed keys are reused only while GitLab's list for that user is the same
 * list: the same key ids with the same armored texts, under the same username (the owner the
 * candidates name). Anything else parses afresh and replaces the entry.
 *
 * Measured by test/bench/verify-push.ts (20 pushes of 5 commits, cold cache vs warm).
 */
import { createHash } from 'node:crypto';
import { readCandidateKeys, type CandidateKey, type KeyOwner } from './commit-signature.js';

/** One entry of GitLab's list of a user's GPG keys, as far as the cache compares it. */
export interface ArmoredKeyEntry {
  id: number;
  key: string;
}

/** A user's GPG keys, parsed: the candidates, and the GitLab key ids openpgp could not read. */
export interface ParsedGpgKeys {
  candidates: CandidateKey[];
  unreadable: number[];
}

interface Entry {
  /** digest of the username and every (id, armored text) of GitLab's answer, in order */
  digest: string;
  parsed: ParsedGpgKeys;
}

// A leader serves a few thousand researchers at most; past this the oldest users parse again.
const DEFAULT_MAX_USERS = 10_000;

/** Parsed GPG keys per GitLab user id, valid while GitLab's answer for the user stays the same. */
export class KeyCache {
  private readonly byUser = new Map<number, Entry>();
  /** How often a user's keys came from the cache, and how often they were parsed. */
  readonly stats = { hits: 0, misses: 0 };

  constructor(private readonly maxUsers = DEFAULT_MAX_USERS) {}

  /** The parsed form of `entries` (GitLab's current answer for `owner`), from the cache when unchanged. */
  async gpgKeysOf(owner: KeyOwner, entries: readonly ArmoredKeyEntry[]): Promise<ParsedGpgKeys> {
    const digest = digestOf(owner, entries);
    const cached = this.byUser.get(owner.id);
    if (cached && cached.digest === digest) {
      this.stats.hits++;
      // Refresh its place: the least recently used user is the one dropped when the cache is full.
      this.byUser.delete(owner.id);
      this.byUser.set(owner.id, cached);
      return cached.parsed;
    }
    this.stats.misses++;
    const parsed = await parseGpgKeys(owner, entries);
    this.byUser.delete(owner.id);
    this.byUser.set(owner.id, { digest, parsed });
    while (this.byUser.size > this.maxUsers) this.byUser.delete(this.byUser.keys().next().value!);
    return parsed;
  }

  /** How many users' keys are held. */
  get size(): number {
    return this.byUser.size;
  }
}

/** Parse a user's keys without a cache (what a KeyCache does on a miss). */
export async function parseGpgKeys(owner: KeyOwner, entries: readonly ArmoredKeyEntry[]): Promise<ParsedGpgKeys> {
  const candidates: CandidateKey[] = [];
  const unreadable: number[] = [];
  for (const entry of entries) {
    const keys = await readCandidateKeys(entry.key, owner);
    if (keys === null) unreadable.push(entry.id);
    else candidates.push(...keys);
  }
  return { candidates, unreadable };
}

// Length-prefixed fields, so no choice of texts can make two different answers hash alike.
function digestOf(owner: KeyOwner, entries: readonly ArmoredKeyEntry[]): string {
  const hash = createHash('sha256');
  const field = (text: string) => {
    const bytes = Buffer.from(text, 'utf8');
    hash.update(`${bytes.length}:`);
    hash.update(bytes);
  };
  field(owner.username);
  for (const e of entries) {
    field(String(e.id));
    field(e.key);
  }
  return hash.digest('hex');
}
