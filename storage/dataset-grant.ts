/**
 * Grants as stored since migration 6: keyed by GitLab user id, the username kept for display
 * (DESIGN §13). The queries live in dataset-store.ts; these are its shapes, checks and the one
 * comparison it shares (a username without case, on both engines).
 */
import { sql, type RawBuilder, type Selectable } from 'kysely';
import type { DatasetGrantsTable } from './sql/cluster-tables.js';

/** The GitLab account a grant is for: its id (the key) and its username (for display). */
export interface GrantAccount {
  username: string;
  userId: number;
}

/** How a grant's user id was learned: GitLab's answer, the operator's `--user-id`, or `grants migrate`. */
export type GrantBinding = 'gitlab' | 'operator' | 'migrate';

/** One account's right to read one dataset; `userId` null: a name-only grant from before migration 6. */
export interface DatasetGrant {
  user: string;
  userId: number | null;
  dataset: string;
  grantedAt: string;
  bound: GrantBinding | null;
  boundAt: string | null;
}

/** The user ids secd's own runs recorded under one username (from authenticated pushes), oldest first. */
export interface IdSeenUnderName {
  userId: number;
  runs: number;
  firstRun: string;
  lastRun: string;
}

/** A dataset_grants row. */
export type DbGrant = Selectable<DatasetGrantsTable>;

/** The columns of a grant, named (MySQL's table has two more that no one reads: cluster-tables.ts). */
export const GRANT_COLUMNS = ['user', 'user_id', 'dataset', 'granted_at', 'bound', 'bound_at'] as const;

/** A grant row as secd shows it. */
export function toGrant(r: DbGrant): DatasetGrant {
  const bound = r.bound === 'gitlab' || r.bound === 'operator' || r.bound === 'migrate' ? r.bound : null;
  return { user: r.user, userId: r.user_id === null ? null : Number(r.user_id), dataset: r.dataset, grantedAt: r.granted_at, bound, boundAt: r.bound_at };
}

/**
 * `column` names `username` without regard to case (GitLab's rule for usernames), the same on both
 * engines: lower() on both sides, which SQLite applies to ASCII letters only (as COLLATE NOCASE
 * did) and MySQL to every letter; GitLab usernames are ASCII.
 */
export function nameIs(column: string, username: string): RawBuilder<boolean> {
  return sql<boolean>`lower(${sql.ref(column)}) = lower(${username})`;
}

/** Why `account` cannot hold a grant, or null. */
export function accountProblem(a: GrantAccount): string | null {
  if (!(Number.isSafeInteger(a.userId) && a.userId >= 1)) return `a grant needs the account's GitLab user id, a whole number of 1 or more (got ${String(a.userId)})`;
  if (typeof a.username !== 'string' || a.username.length === 0 || a.username.length > 255) return 'a grant needs the account\'s GitLab username (1 to 255 characters)';
  return null;
}


/** What `secd admin grants migrate` may do with one name-only grant, and why. */
export type UnboundVerdict = { bind: true; userId: number; why: string } | { bind: false; why: string };

/**
 * The rule for a name-only grant (made before grants were bound to accounts): bind it to the
 * account GitLab has for the name now only when secd's own runs agree: at least one run under the
 * name, and every run under it, carried that account's id (the id comes from the authenticated push,
 * never from the name). A name that GitLab no longer has, that no run ever carried, or that two
 * accounts pushed under is left for an operator to re-grant by hand: nothing secd recorded says
 * which account the grant meant. Even a binding this rule allows is made only on the operator's
 * `--bind`, after reading the evidence: an account that took the name before the upgrade and was
 * the only one to push under it looks, to secd, like the one the grant was for.
 */
export function unboundVerdict(gitlabIdNow: number | null, seen: readonly IdSeenUnderName[]): UnboundVerdict {
  const ids = seen.map((s) => s.userId);
  if (gitlabIdNow === null) return { bind: false, why: 'GitLab has no user by that name now (renamed or deleted)' };
  if (ids.length === 0) return { bind: false, why: `no run of secd's was pushed under the name, so nothing confirms GitLab user ${gitlabIdNow} is the account it meant` };
  if (ids.length > 1) return { bind: false, why: `runs under the name came from ${ids.length} accounts (user ids ${ids.join(', ')}): the name changed hands` };
  const only = seen[0]!;
  if (only.userId !== gitlabIdNow) {
    return { bind: false, why: `secd's runs under the name came from user id ${only.userId}, but GitLab gives the name to user ${gitlabIdNow} now` };
  }
  return {
    bind: true,
    userId: gitlabIdNow,
    why: `GitLab's id for the name now, and the only id on secd's ${only.runs} run(s) under it (${only.firstRun} to ${only.lastRun})`,
  };
}
