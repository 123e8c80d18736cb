/**
 * Grants follow the GitLab account, not its name (DESIGN §13): GitLab lets a name be given up and
 * taken by another account, and that account must not inherit the first one's data. Includes the
 * upgrade of name-only grants made before migration 6: on both engines with such rows written
 * straight into the table (as `secd admin state copy` brings them to MySQL), and on SQLite from a
 * real file of migration 5.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type SqliteDatabase } from './database.js';
import { unboundVerdict } from './dataset-grant.js';
import { MIGRATIONS } from './migrations.js';
import type { RunStore } from './run-store.js';
import { stateOverSqlite } from './sql/state-database.js';
import { plainScope } from './sql/state-scope.js';
import { stateStores, type StateStores } from './state-stores.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';

const ADA = { username: 'ada', userId: 7 };
/** Another account that took the name "ada" after the first one gave it up. */
const NEW_ADA = { username: 'ada', userId: 19 };
const NOW = () => new Date('2026-01-02T03:04:05Z');

let runSeq = 0;
async function pushedRun(runs: RunStore, user: string, userId: number | null): Promise<void> {
  await runs.createRun({
    id: `run${String(++runSeq).padStart(7, '0')}`, projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40),
    commit: '1'.repeat(40), user, userId, deliveryKey: null, fetchUrl: 'http://x',
  });
}

/** Datasets sales and scans, and name-only grants as migration 6 left them. */
async function withNameOnlyGrants(s: StateStores, grants: Array<[user: string, dataset: string]>): Promise<void> {
  for (const name of ['sales', 'scans']) await s.datasets.add({ name, kind: 'mysql', mysqlDatabase: name });
  for (const [user, dataset] of grants) {
    await s.scope.db.insertInto('dataset_grants').values({ user, dataset, granted_at: '2025-06-02T00:00:00.000Z' }).execute();
  }
}

describe.each(STATE_ENGINES)('grants follow the GitLab account, not the name (%s)', (engine) => {
  let s: ScratchStores;
  beforeEach(async () => {
    s = await scratchStores(engine, NOW);
  });
  afterEach(() => s.dispose());

  it('a new account that took a released name gets none of the first account\'s grants', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.grant(ADA, 'sales');
    // ada (7) renames herself; account 19 registers as "ada". Runs carry the pusher's id.
    expect(await datasets.datasetsOf(NEW_ADA.userId)).toEqual([]);
    expect((await datasets.datasetsOf(ADA.userId)).map((d) => d.name)).toEqual(['sales']);
  });

  it('both accounts that carried a name can hold grants; revoking by that name asks which, by id it works', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.grant(ADA, 'sales');
    expect(await datasets.grant(NEW_ADA, 'sales')).toEqual({ ok: true, value: { created: true } });
    expect((await datasets.grants('ada')).map((g) => g.userId)).toEqual([7, 19]);
    expect((await datasets.list())[0]).toMatchObject({ users: 2 });
    expect(await datasets.revoke('ada', 'sales')).toEqual({
      ok: false,
      code: 'invalid',
      reason: 'the name ada holds grants of 2 accounts on sales (user id 7 and user id 19): say which with --user-id',
    });
    expect(await datasets.revoke({ userId: 7 }, 'sales')).toEqual({ ok: true, value: { userId: 7 } });
    expect(await datasets.datasetsOf(7)).toEqual([]);
    expect((await datasets.datasetsOf(19)).map((d) => d.name)).toEqual(['sales']);
    // A deleted account's grant still goes by the name it shows, in any case (GitLab's rule for names).
    expect(await datasets.revoke('ADA', 'sales')).toEqual({ ok: true, value: { userId: 19 } });
    expect(await datasets.revoke({ userId: 19 }, 'sales')).toMatchObject({ ok: false, reason: 'GitLab user 19 has no grant on dataset sales' });
  });

  it('an account that renamed itself keeps its grants, shown under its new name once granted again', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.grant(ADA, 'sales');
    expect((await datasets.datasetsOf(7)).map((d) => d.name)).toEqual(['sales']);
    expect(await datasets.grant({ username: 'ada.lovelace', userId: 7 }, 'sales')).toEqual({ ok: true, value: { created: false } });
    expect((await datasets.grants()).map((g) => [g.user, g.userId])).toEqual([['ada.lovelace', 7]]);
  });

  it('grants are listed by the name they show without regard to case; a name that differs finds none', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.grant({ username: 'Ada', userId: 7 }, 'sales');
    expect((await datasets.grants('aDA')).map((g) => [g.user, g.userId])).toEqual([['Ada', 7]]);
    expect(await datasets.grants('ada2')).toEqual([]);
    expect(await datasets.grants('ad')).toEqual([]);
  });

  it('an account holds a dataset once; granting it again by id changes nothing but the name shown', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.grant(ADA, 'sales');
    await expect(
      s.state.db.insertInto('dataset_grants').values({ user: 'someone', user_id: 7, dataset: 'sales', granted_at: 'x', bound: 'gitlab', bound_at: 'x' }).execute(),
    ).rejects.toThrow();
    expect(await datasets.grants()).toHaveLength(1);
  });
});

describe.each(STATE_ENGINES)('name-only grants (from before migration 6) (%s)', (engine) => {
  let s: ScratchStores;
  beforeEach(async () => {
    s = await scratchStores(engine, NOW);
  });
  afterEach(() => s.dispose());

  it('are honoured for no one and counted for no one', async () => {
    await withNameOnlyGrants(s, [['ada', 'sales'], ['bob', 'sales']]);
    expect(await s.datasets.unboundGrants()).toEqual([
      { user: 'ada', userId: null, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: null, boundAt: null },
      { user: 'bob', userId: null, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: null, boundAt: null },
    ]);
    for (const id of [1, 2, 7, 19]) expect(await s.datasets.datasetsOf(id)).toEqual([]);
    expect((await s.datasets.list()).find((d) => d.name === 'sales')).toMatchObject({ users: 0 });
  });

  it('two name-only grants of the same name and dataset are refused; names differing in case are two', async () => {
    await withNameOnlyGrants(s, [['ada', 'sales']]);
    await expect(s.scope.db.insertInto('dataset_grants').values({ user: 'ada', dataset: 'sales', granted_at: 'x' }).execute()).rejects.toThrow();
    // Bound and name-only grants of one name live side by side, as do other datasets and spellings.
    await s.datasets.grant(NEW_ADA, 'scans');
    await s.scope.db.insertInto('dataset_grants').values({ user: 'ada', dataset: 'scans', granted_at: 'x' }).execute();
    await s.scope.db.insertInto('dataset_grants').values({ user: 'Ada', dataset: 'sales', granted_at: 'x' }).execute();
    expect((await s.datasets.unboundGrants()).map((g) => `${g.user}/${g.dataset}`)).toEqual(['Ada/sales', 'ada/sales', 'ada/scans']);
  });

  it('a grant must say how its id was learned exactly when it has one', async () => {
    await withNameOnlyGrants(s, []);
    const row = { user: 'ada', dataset: 'sales', granted_at: 'x' };
    await expect(s.scope.db.insertInto('dataset_grants').values({ ...row, user_id: 7 }).execute()).rejects.toThrow();
    await expect(s.scope.db.insertInto('dataset_grants').values({ ...row, bound: 'gitlab' }).execute()).rejects.toThrow();
    await expect(s.scope.db.insertInto('dataset_grants').values({ ...row, user_id: 7, bound: 'guessed' }).execute()).rejects.toThrow();
    expect(await s.datasets.grants()).toEqual([]);
  });

  it('an operator granting the name again binds the old grant to the account instead of adding a second', async () => {
    await withNameOnlyGrants(s, [['ada', 'sales']]);
    expect(await s.datasets.grant({ username: 'Ada', userId: 7 }, 'sales', 'operator')).toEqual({ ok: true, value: { created: true } });
    expect(await s.datasets.grants()).toEqual([
      { user: 'Ada', userId: 7, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: 'operator', boundAt: '2026-01-02T03:04:05.000Z' },
    ]);
    expect(await s.datasets.unboundGrants()).toEqual([]);
  });

  it('granting an account that already holds the dataset drops the name-only shadow of its name', async () => {
    await withNameOnlyGrants(s, []);
    await s.datasets.grant(ADA, 'sales');
    await s.scope.db.insertInto('dataset_grants').values({ user: 'ADA', dataset: 'sales', granted_at: 'x' }).execute();
    expect(await s.datasets.grant(ADA, 'sales')).toEqual({ ok: true, value: { created: false } });
    expect((await s.datasets.grants()).map((g) => [g.user, g.userId])).toEqual([['ada', 7]]);
  });

  it('binds only where GitLab\'s account for the name is the only one secd saw push under it', async () => {
    await withNameOnlyGrants(s, [['ada', 'sales'], ['ada', 'scans'], ['bob', 'sales'], ['cy', 'sales'], ['dan', 'sales']]);
    const { datasets, runs } = s;
    await pushedRun(runs, 'ada', 7);
    await pushedRun(runs, 'ada', 7);
    await pushedRun(runs, 'bob', 8);
    await pushedRun(runs, 'bob', 21); // the name changed hands: someone else pushed as bob
    await pushedRun(runs, 'cy', null); // a row from before secd kept ids proves nothing
    const seen = (name: string) => datasets.idsSeenUnder(name);
    expect(await seen('ADA')).toEqual([{ userId: 7, runs: 2, firstRun: expect.any(String), lastRun: expect.any(String) }]);
    expect(unboundVerdict(7, await seen('ada'))).toMatchObject({ bind: true, userId: 7, why: expect.stringContaining('the only id on secd\'s 2 run(s)') });
    expect(unboundVerdict(19, await seen('ada'))).toEqual({
      bind: false,
      why: "secd's runs under the name came from user id 7, but GitLab gives the name to user 19 now",
    });
    expect(unboundVerdict(21, await seen('bob'))).toMatchObject({ bind: false, why: expect.stringContaining('came from 2 accounts (user ids 8, 21)') });
    expect(unboundVerdict(30, await seen('cy'))).toMatchObject({ bind: false, why: expect.stringContaining('no run of secd\'s was pushed under the name') });
    expect(unboundVerdict(null, await seen('dan'))).toMatchObject({ bind: false, why: expect.stringContaining('GitLab has no user by that name now') });

    // The name is the one unboundGrants listed, exactly.
    expect(await datasets.bindUnbound('ADA', 'sales', 7)).toBe(false);
    expect(await datasets.bindUnbound('ada', 'sales', 7)).toBe(true);
    expect(await datasets.bindUnbound('ada', 'sales', 7)).toBe(false);
    expect((await datasets.datasetsOf(7)).map((d) => d.name)).toEqual(['sales']);
    expect((await datasets.grants('ada')).find((g) => g.dataset === 'sales')).toMatchObject({ userId: 7, bound: 'migrate' });
    // The rest stay name-only and count for no one.
    expect((await datasets.unboundGrants()).map((g) => `${g.user}/${g.dataset}`)).toEqual(['ada/scans', 'bob/sales', 'cy/sales', 'dan/sales']);
    expect(await datasets.datasetsOf(21)).toEqual([]);
    // Binding to an account that already holds the dataset drops the name-only duplicate.
    await datasets.grant({ username: 'bob', userId: 8 }, 'scans');
    await s.scope.db.insertInto('dataset_grants').values({ user: 'bobby', dataset: 'scans', granted_at: 'x' }).execute();
    expect(await datasets.bindUnbound('bobby', 'scans', 8)).toBe(true);
    expect((await datasets.grants()).filter((g) => g.dataset === 'scans').map((g) => [g.user, g.userId])).toEqual([
      ['ada', null],
      ['bob', 8],
    ]);
    await expect(datasets.bindUnbound('ada', 'scans', 0)).rejects.toThrow('bindUnbound: 0 is not a GitLab user id');
  });
});

/** A SQLite file as an earlier secd left it: migrations 1-5, grants by name only. */
function databaseAtMigration5(grants: Array<[user: string, dataset: string]>): SqliteDatabase {
  const db = openDatabase(':memory:');
  db.pragma('foreign_keys = OFF');
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>;
  for (const { name } of tables) db.exec(`DROP TABLE "${name}"`);
  for (const sql of MIGRATIONS.slice(0, 5)) db.exec(sql);
  db.pragma('user_version = 5');
  db.pragma('foreign_keys = ON');
  for (const name of ['sales', 'scans']) {
    db.prepare('INSERT INTO datasets (name, kind, mysql_database, created_at) VALUES (?, ?, ?, ?)').run(name, 'mysql', name, '2025-06-01T00:00:00.000Z');
  }
  for (const [user, dataset] of grants) {
    db.prepare('INSERT INTO dataset_grants (user, dataset, granted_at) VALUES (?, ?, ?)').run(user, dataset, '2025-06-02T00:00:00.000Z');
  }
  return db;
}

describe('upgrading a SQLite file of name-only grants (migration 6)', () => {
  it('keeps each grant, without an id, and an operator\'s grant binds it', async () => {
    const db = databaseAtMigration5([['ada', 'sales'], ['bob', 'sales']]);
    migrate(db);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    const state = stateOverSqlite(db);
    try {
      const { datasets } = stateStores(plainScope(state), NOW);
      expect(await datasets.unboundGrants()).toEqual([
        { user: 'ada', userId: null, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: null, boundAt: null },
        { user: 'bob', userId: null, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: null, boundAt: null },
      ]);
      for (const id of [1, 2, 7, 19]) expect(await datasets.datasetsOf(id)).toEqual([]);
      expect(await datasets.grant({ username: 'Ada', userId: 7 }, 'sales', 'operator')).toEqual({ ok: true, value: { created: true } });
      expect((await datasets.unboundGrants()).map((g) => g.user)).toEqual(['bob']);
      expect((await datasets.datasetsOf(7)).map((d) => d.name)).toEqual(['sales']);
    } finally {
      await state.close();
      db.close();
    }
  });
});
