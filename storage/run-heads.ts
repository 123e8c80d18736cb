/**
 * What the reconciler (scheduler/reconcile) asks of the runs table: which projects secd has seen, and
 * whether any run, accepted or rejected, exists for one commit of one ref. A rejected run covers its
 * commit too: GitLab announced it and secd answered, so finding it again is no missed push.
 *
 * Reads only, on either engine (indexed: runs_project and runs_push lead with project_id); ref and
 * commit compare byte-exactly on both (MySQL's tables are utf8mb4_bin).
 */
import type { StateScope } from './sql/state-scope.js';

/** The runs table as the reconciler reads it. */
export interface RunHeads {
  /** Every project id with at least one run, ascending. */
  knownProjects(): Promise<number[]>;
  /** True when some run of `projectId` was for `commit` on `ref` (a full `refs/heads/...` name). */
  hasRunAt(projectId: number, ref: string, commit: string): Promise<boolean>;
}

/** RunHeads over the leader's state (reads go to `scope.db`). */
export function runHeads(scope: StateScope): RunHeads {
  return {
    async knownProjects() {
      const rows = await scope.db.selectFrom('runs').select('project_id').distinct().orderBy('project_id').execute();
      return rows.map((r) => Number(r.project_id));
    },
    async hasRunAt(projectId, ref, commit) {
      const r = await scope.db
        .selectFrom('runs')
        .select('id')
        .where('project_id', '=', projectId)
        .where('ref', '=', ref)
        .where('commit_sha', '=', commit)
        .limit(1)
        .executeTakeFirst();
      return r !== undefined;
    },
  };
}
