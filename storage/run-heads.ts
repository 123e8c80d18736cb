/**
 * What the reconciler (scheduler/reconcile) asks of the runs table: which projects secd has seen, and
 * whether any run, accepted or rejected, exists for one commit of one ref. A rejected run covers its
 * commit too: GitLab announced it and secd answered, so finding it again is no missed push.
 */
import type { SqliteDatabase } from './database.js';

/** The runs table as the reconciler reads it. */
export interface RunHeads {
  /** Every project id with at least one run, ascending. */
  knownProjects(): number[];
  /** True when some run of `projectId` was for `commit` on `ref` (a full `refs/heads/...` name). */
  hasRunAt(projectId: number, ref: string, commit: string): boolean;
}

/** RunHeads over the leader's database (indexed: runs_project leads with project_id). */
export function runHeads(db: SqliteDatabase): RunHeads {
  const known = db.prepare('SELECT DISTINCT project_id AS id FROM runs ORDER BY project_id');
  const ranAt = db.prepare('SELECT 1 FROM runs WHERE project_id = ? AND ref = ? AND commit_sha = ? LIMIT 1');
  return {
    knownProjects: () => (known.all() as Array<{ id: number }>).map((r) => r.id),
    hasRunAt: (projectId, ref, commit) => ranAt.get(projectId, ref, commit) !== undefined,
  };
}
