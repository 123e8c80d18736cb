/**
 * `secd admin state copy --from sqlite --to mysql` (DESIGN §11): moves an existing leader's state
 * from its `secd.db` into an empty, migrated MySQL/MariaDB state database, so a site can go from one
 * leader to several without losing a run, a grant or a review.
 *
 * Choices made here:
 * - The target must hold no runs, nodes, datasets or releases: copying into a database that already
 *   has state would merge two histories, which no operator means. It is refused with what it holds.
 * - The source is read in one read transaction (a consistent snapshot even if a leader still runs;
 *   stop it first anyway, or its writes after the snapshot are not copied) and written in ONE target
 *   transaction: a copy that fails half-way leaves the target as empty as it was.
 * - Rows are copied with the columns the source has, in the order SQLite stored them (rowid, or the
 *   key of a WITHOUT ROWID table), so the MySQL runs' ordering column follows the same order;
 *   parents before children (foreign keys).
 * - The lease is not copied, but its epoch is carried: the target's epoch becomes at least the
 *   source's, so nodes that saw the old leader's epoch accept the new leaders.
 */
import { sql, type Kysely } from 'kysely';
import type { StateDatabase } from './state-database.js';
import { LEADER_LEASE } from './state-migrations.js';

/** The tables copied, parents first. */
export const COPIED_TABLES = [
  'runs',
  'run_events',
  'deliveries',
  'verified_commits',
  'nodes',
  'datasets',
  'dataset_grants',
  'run_datasets',
  'run_releases',
] as const;

/** The order rows are read in: as stored (rowid), or by key where SQLite keeps no rowid (WITHOUT ROWID). */
const READ_ORDER: Record<(typeof COPIED_TABLES)[number], string> = {
  runs: 'rowid',
  run_events: 'seq',
  deliveries: 'rowid',
  verified_commits: 'project_id, sha',
  nodes: 'id',
  datasets: 'name',
  dataset_grants: 'rowid',
  run_datasets: 'rowid',
  run_releases: 'rowid',
};

/** How many rows go in one INSERT. */
const BATCH = 200;

/** What a copy moved, per table, and the epoch the target's lease starts from. */
export interface StateCopyOutcome {
  rows: Record<(typeof COPIED_TABLES)[number], number>;
  epoch: number;
}

/** The target already holds state: nothing was copied. */
export class TargetNotEmpty extends Error {
  readonly code = 'TARGET_NOT_EMPTY';
  constructor(readonly held: Record<string, number>) {
    super(
      `the target state database is not empty (${Object.entries(held)
        .map(([t, n]) => `${n} row(s) in ${t}`)
        .join(', ')}); copy only into a new, empty database`,
    );
    this.name = 'TargetNotEmpty';
  }
}

/**
 * Copy every table of `from` (a migrated SQLite state) into `to` (a migrated, empty MySQL state).
 * Both must be at the same schema: migrate both first (the command does).
 */
export async function copyState(from: StateDatabase, to: StateDatabase): Promise<StateCopyOutcome> {
  if (from.engine !== 'sqlite' || to.engine !== 'mysql') throw new Error(`state copy goes from sqlite to mysql (asked: ${from.engine} to ${to.engine})`);
  const src = from.db as unknown as Kysely<any>;
  const dst = to.db as unknown as Kysely<any>;
  const held: Record<string, number> = {};
  for (const table of COPIED_TABLES) {
    const n = await countRows(dst, table);
    if (n > 0) held[table] = n;
  }
  if (Object.keys(held).length > 0) throw new TargetNotEmpty(held);

  return src.transaction().execute(async (read) => {
    const sourceEpoch = Number(
      (await read.selectFrom('secd_lease').select('epoch').where('name', '=', LEADER_LEASE).executeTakeFirst())?.epoch ?? 0,
    );
    const rows = Object.fromEntries(COPIED_TABLES.map((t) => [t, 0])) as StateCopyOutcome['rows'];
    const epoch = await dst.transaction().execute(async (write) => {
      for (const table of COPIED_TABLES) {
        const all = (await sql<Record<string, unknown>>`SELECT * FROM ${sql.table(table)} ORDER BY ${sql.raw(READ_ORDER[table])}`.execute(read)).rows;
        for (let i = 0; i < all.length; i += BATCH) await write.insertInto(table).values(all.slice(i, i + BATCH)).execute();
        rows[table] = all.length;
      }
      await write
        .updateTable('secd_lease')
        .set({ epoch: sql`GREATEST(epoch, ${sourceEpoch})` })
        .where('name', '=', LEADER_LEASE)
        .execute();
      const lease = await write.selectFrom('secd_lease').select('epoch').where('name', '=', LEADER_LEASE).executeTakeFirstOrThrow();
      return Number(lease.epoch);
    });
    return { rows, epoch };
  });
}

async function countRows(db: Kysely<any>, table: string): Promise<number> {
  const r = await db.selectFrom(table).select(sql<number>`COUNT(*)`.as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}
