/**
 * The MySQL side of nodes, datasets and releases: created again without harm (MySQL commits DDL as
 * it goes, so a migration that died before its record runs again), byte-exact, with the foreign keys
 * SQLite has.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClusterTablesMysql } from './cluster-tables.js';
import { scratchStores, type ScratchStores } from '../../test/support/scratch-state.js';

describe('the cluster tables on MySQL', () => {
  let s: ScratchStores;
  beforeAll(async () => {
    s = await scratchStores('mysql');
  });
  afterAll(() => s.dispose());

  it('are created again without error and without losing a row', async () => {
    await s.datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await createClusterTablesMysql(s.state.db);
    expect((await s.datasets.list()).map((d) => d.name)).toEqual(['sales']);
  });

  it('compare names byte-exactly and reference their parents', async () => {
    const { rows } = await sql<{ table_name: string; table_collation: string }>`
      SELECT table_name AS table_name, table_collation AS table_collation FROM information_schema.tables
      WHERE table_schema = DATABASE() AND table_name IN ('nodes', 'datasets', 'dataset_grants', 'run_datasets', 'run_releases')
`.execute(s.state.db);
    expect(rows.map((r) => [r.table_name, r.table_collation]).sort()).toEqual([
      ['dataset_grants', 'utf8mb4_bin'],
      ['datasets', 'utf8mb4_bin'],
      ['nodes', 'utf8mb4_bin'],
      ['run_datasets', 'utf8mb4_bin'],
      ['run_releases', 'utf8mb4_bin'],
    ]);
    const fks = await sql<{ t: string; parent: string; on_delete: string }>`
      SELECT table_name AS t, referenced_table_name AS parent, delete_rule AS on_delete FROM information_schema.referential_constraints
      WHERE constraint_schema = DATABASE() AND table_name IN ('dataset_grants', 'run_datasets', 'run_releases')`.execute(s.state.db);
    expect(fks.rows.map((r) => [r.t, r.parent, r.on_delete]).sort()).toEqual([
      ['dataset_grants', 'datasets', 'CASCADE'],
      ['run_datasets', 'runs', 'RESTRICT'],
      ['run_releases', 'runs', 'RESTRICT'],
    ]);
  });
});
