/**
 * Runs, their append-only audit trail, webhook deliveries and verified commits, on either engine of
 * the state (SQLite or MySQL/MariaDB, through the store's StateScope). Every state change goes
 * through `transition`, which checks the one table in run-states.ts and appends the audit event in
 * the same transaction.
 *
 * Choices made here:
 * - Reads go to `scope.db`; every write, even one statement, goes through `scope.write` (that is
 *   where a fenced leader's epoch is checked). Inside a write the work is done by a RunStore over
 *   the transaction's scope, so nothing inside touches the outer connection.
 * - On MySQL several connections write at once (one leader's async paths, `secd admin`, a second
 *   leader): `transition` and `note` read the run FOR UPDATE, so the check of the state table and
 *   the write see the same row. SQLite runs one transaction at a time.
 * - A delivery is claimed by inserting its key: the deliveries primary key decides which of two
 *   leaders that got the same delivery at once creates the run; the other waits on the key, gets
 *   the duplicate-key error and answers with the outcome the first one stored.
 * - Ties of created_at are broken by insert order: rowid on SQLite, runs.seq on MySQL.
 * - A planning round's assignments go through `assignClaimed` (storage/run-assign.ts): a few
 *   statements per 200 runs instead of four per run, with the same rows and events as `transition`.
 * - MySQL may hand integers back as strings (BIGINT, aggregates): they pass through Number()
 *   (storage/run-row.ts maps a row).
 */
import { sql, type Updateable } from 'kysely';
import { assignClaimed, type AssignPlacement, type AssignResult } from './run-assign.js';
import { toRow } from './run-row.js';
import { canTransition, isTerminal, RUN_STATES, type RunState } from './run-states.js';
import { runsInsertOrder, type RunsTable } from './sql/run-tables.js';
import type { StateScope } from './sql/state-scope.js';

export type { AssignPlacement, AssignResult } from './run-assign.js';
/** Every state a run has not ended in. */
const NOT_ENDED: RunState[] = RUN_STATES.filter((s) => !isTerminal(s));

export type { NewRun, RunEvent, RunPatch, RunRow, TransitionResult } from './run-row.js';
import type { NewRun, RunEvent, RunPatch, RunRow, TransitionResult } from './run-row.js';

export type DeliveryClaim<T> = { first: true; value: T } | { first: false; outcome: unknown };

const PATCH_COLUMNS = {
  reason: 'reason',
  signer: 'signer',
  config: 'config',
  warnings: 'warnings',
  node: 'node',
  gpus: 'gpus',
  exitCode: 'exit_code',
  imageId: 'image_id',
  branch: 'branch',
  statusPosted: 'status_posted',
  buildLogTail: 'build_log_tail',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
} as const satisfies Record<keyof RunPatch, keyof RunsTable>;

const JSON_FIELDS = new Set<keyof RunPatch>(['config', 'warnings', 'gpus']);

/** How many verified commits one INSERT carries (well under SQLite's bound on parameters). */
const VERIFIED_PER_INSERT = 500;

/** True when `err` is MySQL's duplicate-key error (ER_DUP_ENTRY). */
function isDuplicateKey(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { errno?: unknown; code?: unknown };
  return e.errno === 1062 || e.code === 'ER_DUP_ENTRY';
}

/** Queries and the only writer of the `runs` table. */
export class RunStore {
  constructor(
    private readonly scope: StateScope,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Insert a run in state `received` with its first audit event. */
  async createRun(run: NewRun, reason = 'push received'): Promise<RunRow> {
    return this.write(async (runs) => {
      const at = runs.now().toISOString();
      await runs.scope.db
        .insertInto('runs')
        .values({
          id: run.id, project_id: run.projectId, project: run.project, ref: run.ref, before_sha: run.beforeSha, commit_sha: run.commit,
          user: run.user, user_id: run.userId, delivery_key: run.deliveryKey, fetch_url: run.fetchUrl,
          state: 'received', reason, warnings: '[]', gpus: '[]', created_at: at,
        })
        .execute();
      await runs.appendEvent(run.id, null, 'received', reason, at);
      return runs.mustGet(run.id);
    });
  }

  /** One run, or undefined. */
  async get(id: string): Promise<RunRow | undefined> {
    const r = await this.scope.db.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toRow(r) : undefined;
  }

  /** Runs newest first, optionally in one state. */
  async list(opts: { state?: RunState; limit?: number } = {}): Promise<RunRow[]> {
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 1000));
    const rows = await this.scope.db
      .selectFrom('runs')
      .selectAll()
      .$if(opts.state !== undefined, (q) => q.where('state', '=', opts.state!))
      .orderBy('created_at', 'desc')
      .orderBy(runsInsertOrder(this.scope.engine), 'desc')
      .limit(limit)
      .execute();
    return rows.map(toRow);
  }

  /** The first run started by the push that moved `ref` of a project from `before` to `after`, if any. */
  async findPush(projectId: number, ref: string, before: string, after: string): Promise<RunRow | undefined> {
    const r = await this.scope.db
      .selectFrom('runs')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('ref', '=', ref)
      .where('before_sha', '=', before)
      .where('commit_sha', '=', after)
      .orderBy('created_at', 'asc')
      .orderBy(runsInsertOrder(this.scope.engine), 'asc')
      .limit(1)
      // Inside a write on MySQL the lookup locks the index range it read (next-key locks), so two
      // leaders storing the same push under two delivery keys at once cannot both find none and both
      // create a run: one waits, or loses a deadlock and runs again (the scope retries) to find the other's.
      .$if(this.scope.inTransaction && this.scope.engine === 'mysql', (q) => q.forUpdate())
      .executeTakeFirst();
    return r ? toRow(r) : undefined;
  }

  /**
   * Inside a write: the runs of `ids` that are `queued`, each locked for this transaction — on MySQL
   * with `FOR UPDATE SKIP LOCKED`, so a run another transaction holds right now (an operator's
   * cancel, a newer push superseding it) is left out of this claim instead of waited for; the planner
   * sees it again next round. On SQLite the write transaction already excludes other writers.
   */
  async claimQueued(ids: readonly string[]): Promise<RunRow[]> {
    if (ids.length === 0) return [];
    const rows = await this.scope.db
      .selectFrom('runs')
      .selectAll()
      .where('id', 'in', [...ids])
      .where('state', '=', 'queued')
      .$if(this.scope.inTransaction && this.scope.engine === 'mysql', (q) => q.forUpdate().skipLocked())
      .execute();
    return rows.map(toRow);
  }

  /**
   * Inside a write, after `claimQueued`: move the claimed runs of `placements` to `assigned`, with
   * their node, GPUs and reason, a chunk at a time (storage/run-assign.ts). The same rows, events and
   * refusals as `transition` per placement, in placement order; a run not in `claimed` is refused as
   * `not_claimed`. Throws outside a transaction.
   */
  async assignClaimed(claimed: readonly RunRow[], placements: readonly AssignPlacement[]): Promise<AssignResult[]> {
    return assignClaimed(this.scope, this.now, claimed, placements, (id, reason, patch) => this.transition(id, 'assigned', reason, patch));
  }

  /** Runs in any of `states`, oldest first (what the lifecycle resumes after a restart). */
  async inStates(states: readonly RunState[]): Promise<RunRow[]> {
    if (states.length === 0) return [];
    const rows = await this.scope.db
      .selectFrom('runs')
      .selectAll()
      .where('state', 'in', [...states])
      .orderBy('created_at', 'asc')
      .orderBy(runsInsertOrder(this.scope.engine), 'asc')
      .execute();
    return rows.map(toRow);
  }

  /** A project's runs that have not ended, oldest first (the ended ones, a project's whole history, are not read). */
  async activeRunsOfProject(projectId: number): Promise<RunRow[]> {
    const rows = await this.scope.db
      .selectFrom('runs')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('state', 'in', NOT_ENDED)
      .orderBy('created_at', 'asc')
      .orderBy(runsInsertOrder(this.scope.engine), 'asc')
      .execute();
    return rows.map(toRow);
  }

  /** Move a run to `to` if the table allows it, setting `patch` and appending the audit event. */
  async transition(id: string, to: RunState, reason: string, patch: RunPatch = {}): Promise<TransitionResult> {
    return this.write(async (runs): Promise<TransitionResult> => {
      const current = await runs.lockRun(id);
      if (!current) return { ok: false, code: 'not_found' };
      if (!canTransition(current.state, to)) return { ok: false, code: 'illegal_transition', from: current.state };
      const at = runs.now().toISOString();
      const full: RunPatch = { ...patch, reason };
      if (isTerminal(to) && patch.finishedAt === undefined) full.finishedAt = at;
      await runs.writePatch(id, full, to);
      await runs.appendEvent(id, current.state, to, reason, at);
      return { ok: true, run: await runs.mustGet(id) };
    });
  }

  /**
   * Run `fn` in one transaction: its reads see one state of the database (other processes, such as
   * `secd admin`, write it too) and its writes land together or not at all. `fn` gets a RunStore
   * bound to that transaction: call it, never this one, inside.
   */
  async inTransaction<T>(fn: (runs: RunStore) => Promise<T>): Promise<T> {
    return this.write(fn);
  }

  /** Set fields that are not the state (what was posted to GitLab, the node's observations). */
  async update(id: string, patch: RunPatch): Promise<void> {
    if (!Object.values(patch).some((v) => v !== undefined)) return;
    await this.write((runs) => runs.writePatch(id, patch, null));
  }

  /**
   * Append an audit event that changes no state (an approval counted, a merge request opened): it
   * reads as `from` = `to` = the run's current state. False when there is no such run.
   */
  async note(id: string, reason: string): Promise<boolean> {
    return this.write(async (runs) => {
      const current = await runs.lockRun(id);
      if (!current) return false;
      await runs.appendEvent(id, current.state, current.state, reason, runs.now().toISOString());
      return true;
    });
  }

  /** The audit trail of one run, oldest first. */
  async events(id: string): Promise<RunEvent[]> {
    const rows = await this.scope.db
      .selectFrom('run_events')
      .select(['at', 'from_state', 'to_state', 'reason'])
      .where('run_id', '=', id)
      .orderBy('seq')
      .execute();
    return rows.map((r) => ({ at: r.at, from: r.from_state as RunState | null, to: r.to_state as RunState, reason: r.reason }));
  }

  /**
   * Remember a webhook delivery; `first: false` with the stored outcome when the key was seen before
   * (a re-sent delivery, or the same one at another leader at the same moment). `onFirst` runs in
   * the same transaction, and only for the claim that inserted the key, so a crash can't record the
   * key without its run and two leaders never both create one.
   */
  async claimDelivery<T>(key: string, event: string, onFirst: (runs: RunStore) => Promise<T>): Promise<DeliveryClaim<T>> {
    return this.write(async (runs): Promise<DeliveryClaim<T>> => {
      const db = runs.scope.db;
      const seen = await db.selectFrom('deliveries').select('outcome').where('key', '=', key).executeTakeFirst();
      if (seen) return { first: false, outcome: JSON.parse(seen.outcome) as unknown };
      if (!(await runs.insertDelivery(key, event))) {
        // Another leader's claim committed the key while this one waited on it. A locking read sees
        // that commit even where this transaction's snapshot predates it (REPEATABLE READ).
        const stored = await db.selectFrom('deliveries').select('outcome').where('key', '=', key).modifyEnd(sql`lock in share mode`).executeTakeFirst();
        if (!stored) throw new Error(`delivery ${key} was refused as a duplicate but no stored outcome was found`);
        return { first: false, outcome: JSON.parse(stored.outcome) as unknown };
      }
      const value = await onFirst(runs);
      await db.updateTable('deliveries').set({ outcome: JSON.stringify(value ?? null) }).where('key', '=', key).execute();
      return { first: true, value };
    });
  }

  /** Whether a commit of this project already passed verification. */
  async isVerified(projectId: number, sha: string): Promise<boolean> {
    const r = await this.scope.db.selectFrom('verified_commits').select('sha').where('project_id', '=', projectId).where('sha', '=', sha).executeTakeFirst();
    return r !== undefined;
  }

  /** Record commits that passed verification, so a later first push of another branch skips them. */
  async markVerified(projectId: number, shas: readonly string[], signer: string): Promise<void> {
    if (shas.length === 0) return;
    const at = this.now().toISOString();
    await this.write(async (runs) => {
      for (let i = 0; i < shas.length; i += VERIFIED_PER_INSERT) {
        const values = shas.slice(i, i + VERIFIED_PER_INSERT).map((sha) => ({ project_id: projectId, sha, signer, verified_at: at }));
        // An already verified commit keeps its first record (INSERT OR IGNORE before).
        const insert = runs.scope.db.insertInto('verified_commits').values(values);
        await (runs.scope.engine === 'mysql'
          ? insert.onDuplicateKeyUpdate((eb) => ({ sha: eb.ref('verified_commits.sha') }))
          : insert.onConflict((oc) => oc.columns(['project_id', 'sha']).doNothing())
        ).execute();
      }
    });
  }

  /** `fn` in one transaction of this store's scope, over a store bound to it. */
  private write<T>(fn: (runs: RunStore) => Promise<T>): Promise<T> {
    return this.scope.write((trx) => fn(new RunStore(trx, this.now)));
  }

  /** Inside a write: the run, locked against other writers until the transaction ends (MySQL). */
  private async lockRun(id: string): Promise<RunRow | undefined> {
    const r = await this.scope.db
      .selectFrom('runs')
      .selectAll()
      .where('id', '=', id)
      .$if(this.scope.engine === 'mysql', (q) => q.forUpdate())
      .executeTakeFirst();
    return r ? toRow(r) : undefined;
  }

  /** Inside a write: a run this transaction just wrote. */
  private async mustGet(id: string): Promise<RunRow> {
    const run = await this.get(id);
    if (!run) throw new Error(`run ${id} vanished inside the transaction that wrote it`);
    return run;
  }

  /**
   * Inside a write: insert the delivery's key with a placeholder outcome; false when the key is
   * already there. MySQL answers a key another open transaction inserted by waiting for it to end.
   */
  private async insertDelivery(key: string, event: string): Promise<boolean> {
    const insert = this.scope.db
      .insertInto('deliveries')
      .values({ key, received_at: this.now().toISOString(), event, outcome: 'null' });
    if (this.scope.engine === 'sqlite') {
      const r = await insert.onConflict((oc) => oc.column('key').doNothing()).executeTakeFirst();
      return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
    }
    // Not INSERT IGNORE: it would also turn a too-long key into a warning and store it cut.
    try {
      await insert.execute();
      return true;
    } catch (err) {
      if (isDuplicateKey(err)) return false;
      throw err;
    }
  }

  private async writePatch(id: string, patch: RunPatch, state: RunState | null): Promise<void> {
    const set: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(patch) as Array<[keyof RunPatch, unknown]>) {
      if (value === undefined) continue;
      set[PATCH_COLUMNS[field]] = JSON_FIELDS.has(field) ? JSON.stringify(value) : value;
    }
    if (state) set.state = state;
    if (Object.keys(set).length === 0) return;
    await this.scope.db.updateTable('runs').set(set as Updateable<RunsTable>).where('id', '=', id).execute();
  }

  private async appendEvent(id: string, from: RunState | null, to: RunState, reason: string, at: string): Promise<void> {
    await this.scope.db.insertInto('run_events').values({ run_id: id, at, from_state: from, to_state: to, reason }).execute();
  }
}
