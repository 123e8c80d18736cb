/**
 * A run's types (RunRow, NewRun, RunPatch, RunEvent, TransitionResult; storage/run-store.ts
 * re-exports them) and how a row of `runs` reads back as a RunRow, on either engine: shared by the run store
 * (storage/run-store.ts) and the batched assignment (storage/run-assign.ts), so both hand back
 * exactly the same values.
 *
 * MySQL may hand integers back as strings (BIGINT, aggregates): they pass through Number(). JSON
 * columns (config, warnings, gpus) are parsed; a state outside RUN_STATES is a bug and throws.
 */
import type { Selectable } from 'kysely';
import { RUN_STATES, type RunState } from './run-states.js';
import type { RunsTable } from './sql/run-tables.js';

/** A run as stored (camelCase; the API maps it to snake_case). */
export interface RunRow {
  id: string;
  projectId: number;
  project: string;
  ref: string;
  beforeSha: string;
  commit: string;
  user: string;
  userId: number | null;
  deliveryKey: string | null;
  fetchUrl: string;
  state: RunState;
  reason: string;
  signer: string | null;
  config: unknown;
  warnings: string[];
  node: string | null;
  gpus: string[];
  exitCode: number | null;
  imageId: string | null;
  branch: string | null;
  statusPosted: string | null;
  /** A failed build's last build.log lines (a direct run's; null for every other run). */
  buildLogTail: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** What intake knows when a run is created. */
export type NewRun = Pick<
  RunRow,
  'id' | 'projectId' | 'project' | 'ref' | 'beforeSha' | 'commit' | 'user' | 'userId' | 'deliveryKey' | 'fetchUrl'
>;

/** Fields other than `state` a transition or update may set. */
export type RunPatch = Partial<
  Pick<
    RunRow,
    'reason' | 'signer' | 'config' | 'warnings' | 'node' | 'gpus' | 'exitCode' | 'imageId' | 'branch' | 'statusPosted' | 'buildLogTail' | 'startedAt' | 'finishedAt'
  >
>;

/** One audit event. */
export interface RunEvent {
  at: string;
  from: RunState | null;
  to: RunState;
  reason: string;
}

/** Outcome of a transition: illegal ones are values, so racing writers can tell and move on. */
export type TransitionResult =
  | { ok: true; run: RunRow }
  | { ok: false; code: 'not_found' }
  | { ok: false; code: 'illegal_transition'; from: RunState };

/** What claiming a delivery found: the first time, `onFirst`'s value; again, the stored outcome. */

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
