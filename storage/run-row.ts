/**
 * How a row of `runs` reads back as a RunRow, on either engine: shared by the run store
 * (storage/run-store.ts) and the batched assignment (storage/run-assign.ts), so both hand back
 * exactly the same values.
 *
 * MySQL may hand integers back as strings (BIGINT, aggregates): they pass through Number(). JSON
 * columns (config, warnings, gpus) are parsed; a state outside RUN_STATES is a bug and throws.
 */
import type { Selectable } from 'kysely';
import { RUN_STATES, type RunState } from './run-states.js';
import type { RunsTable } from './sql/run-tables.js';
import type { RunRow } from './run-store.js';

/** A row of `runs` as the database gives it. */
export type DbRun = Selectable<RunsTable>;

/** The stored row as the stores hand it out. */
export function toRow(r: DbRun): RunRow {
  if (!(RUN_STATES as readonly string[]).includes(r.state)) throw new Error(`run ${r.id} has unknown state ${r.state}`);
  return {
    id: r.id,
    projectId: Number(r.project_id),
    project: r.project,
    ref: r.ref,
    beforeSha: r.before_sha,
    commit: r.commit_sha,
    user: r.user,
    userId: r.user_id === null ? null : Number(r.user_id),
    deliveryKey: r.delivery_key,
    fetchUrl: r.fetch_url,
    state: r.state as RunState,
    reason: r.reason,
    signer: r.signer,
    config: r.config === null ? null : JSON.parse(r.config),
    warnings: JSON.parse(r.warnings) as string[],
    node: r.node,
    gpus: JSON.parse(r.gpus) as string[],
    exitCode: r.exit_code === null ? null : Number(r.exit_code),
    imageId: r.image_id,
    branch: r.branch,
    statusPosted: r.status_posted,
    buildLogTail: r.build_log_tail ?? null,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
}
