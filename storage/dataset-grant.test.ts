/**
 * Grants follow the GitLab account, not its name (DESIGN §13): GitLab lets a name be given up and
 * taken by another account, and that account must not inherit the first one's data. Includes the
 * upgrade of name-only grants made before migration 6.
 */
import { describe, expect, it } from 'vitest';
import { migrate, openDatabase, type SqliteDatabase } from './database.js';
import { unboundVerdict } from './dataset-grant.js';
import { DatasetStore } from './dataset-store.js';
import { MIGRATIONS } from './migrations.js';
import { RunStore } from './run-store.js';

const ADA = { username: 'ada', userId: 7 };
/** Another account that took the name "ada" after the first one gave it up. */
const NEW_ADA = { username: 'ada', userId: 19 };

function stores(db: SqliteDatabase = openDatabase(':memory:')) {
  return { db, datasets: new DatasetStore(db, () => new Date('2026-01-02T03:04:05Z')), runs: new RunStore(db) };
}

let runSeq = 0;
function pushedRun(runs: RunStore, user: string, userId: number | null): void {
  runs.createRun({
    id: `run${String(++runSeq).padStart(7, '0')}`, projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40),
    commit: '1'.repeat(40), user, userId, deliveryKey: null, fetchUrl: 'http://x',
  });
}

/** A database as an earlier secd left it: migrations 1-5, grants by name only. */
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

describe('grants follow the GitLab account, not the name', () => {
  it('a new account that took a released name gets none of the first account\'s grants', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    datasets.grant(ADA, 'sales');
    // ada (7) renames herself; account 19 registers as "ada". Runs carry the pusher's id.
    expect(datasets.datasetsOf(NEW_ADA.userId)).toEqual([]);
    expect(datasets.datasetsOf(ADA.userId).map((d) => d.name)).toEqual(['sales']);
  });

  it('both accounts that carried a name can hold grants; revoking by that name asks which, by id it works', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    datasets.grant(ADA, 'sales');
    expect(datasets.grant(NEW_ADA, 'sales')).toEqual({ ok: true, value: { created: true } });
    expect(datasets.grants('ada').map((g) => g.userId)).toEqual([7, 19]);
    expect(datasets.list()[0]).toMatchObject({ users: 2 });
    expect(datasets.revoke('ada', 'sales')).toEqual({
      ok: false,
      code: 'invalid',
      reason: 'the name ada holds grants of 2 accounts on sales (user id 7 and user id 19): say which with --user-id',
    });
    expect(datasets.revoke({ userId: 7 }, 'sales')).toEqual({ ok: true, value: { userId: 7 } });
    expect(datasets.datasetsOf(7)).toEqual([]);
    expect(datasets.datasetsOf(19).map((d) => d.name)).toEqual(['sales']);
    // A deleted account's grant still goes by the name it shows.
    expect(datasets.revoke('ADA', 'sales')).toEqual({ ok: true, value: { userId: 19 } });
    expect(datasets.revoke({ userId: 19 }, 'sales')).toMatchObject({ ok: false, reason: 'GitLab user 19 has no grant on dataset sales' });
  });

  it('an account that renamed itself keeps its grants, shown under its new name once granted again', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    datasets.grant(ADA, 'sales');
    expect(datasets.datasetsOf(7).map((d) => d.name)).toEqual(['sales']);
    expect(datasets.grant({ username: 'ada.lovelace', userId: 7 }, 'sales')).toEqual({ ok: true, value: { created: false } });
    expect(datasets.grants().map((g) => [g.user, g.userId])).toEqual([['ada.lovelace', 7]]);
  });
});

describe('upgrading name-only grants (migration 6)', () => {
  it('keeps each grant, without an id, and honours it for no one', () => {
    const db = databaseAtMigration5([['ada', 'sales'], ['bob', 'sales']]);
    migrate(db);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    const { datasets } = stores(db);
    expect(datasets.unboundGrants()).toEqual([
      { user: 'ada', userId: null, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: null, boundAt: null },
      { user: 'bob', userId: null, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: null, boundAt: null },
    ]);
    for (const id of [1, 2, 7, 19]) expect(datasets.datasetsOf(id)).toEqual([]);
    expect(datasets.list().find((d) => d.name === 'sales')).toMatchObject({ users: 0 });
  });

  it('an operator granting the name again binds the old grant to the account instead of adding a second', () => {
    const db = databaseAtMigration5([['ada', 'sales']]);
    migrate(db);
    const { datasets } = stores(db);
    expect(datasets.grant({ username: 'Ada', userId: 7 }, 'sales', 'operator')).toEqual({ ok: true, value: { created: true } });
    expect(datasets.grants()).toEqual([
      { user: 'Ada', userId: 7, dataset: 'sales', grantedAt: '2025-06-02T00:00:00.000Z', bound: 'operator', boundAt: '2026-01-02T03:04:05.000Z' },
    ]);
    expect(datasets.unboundGrants()).toEqual([]);
  });

  it('binds only where GitLab\'s account for the name is the only one secd saw push under it', () => {
    const db = databaseAtMigration5([['ada', 'sales'], ['ada', 'scans'], ['bob', 'sales'], ['cy', 'sales'], ['dan', 'sales']]);
    migrate(db);
    const { datasets, runs } = stores(db);
    pushedRun(runs, 'ada', 7);
    pushedRun(runs, 'ada', 7);
    pushedRun(runs, 'bob', 8);
    pushedRun(runs, 'bob', 21); // the name changed hands: someone else pushed as bob
    pushedRun(runs, 'cy', null); // a row from before secd kept ids proves nothing
    const seen = (name: string) => datasets.idsSeenUnder(name);
    expect(seen('ADA')).toEqual([{ userId: 7, runs: 2, firstRun: expect.any(String), lastRun: expect.any(String) }]);
    expect(unboundVerdict(7, seen('ada'))).toMatchObject({ bind: true, userId: 7, why: expect.stringContaining('the only id on secd\'s 2 run(s)') });
    expect(unboundVerdict(19, seen('ada'))).toEqual({
      bind: false,
      why: "secd's runs under the name came from user id 7, but GitLab gives the name to user 19 now",
    });
    expect(unboundVerdict(21, seen('bob'))).toMatchObject({ bind: false, why: expect.stringContaining('came from 2 accounts (user ids 8, 21)') });
    expect(unboundVerdict(30, seen('cy'))).toMatchObject({ bind: false, why: expect.stringContaining('no run of secd\'s was pushed under the name') });
    expect(unboundVerdict(null, seen('dan'))).toMatchObject({ bind: false, why: expect.stringContaining('GitLab has no user by that name now') });

    expect(datasets.bindUnbound('ada', 'sales', 7)).toBe(true);
    expect(datasets.bindUnbound('ada', 'sales', 7)).toBe(false);
    expect(datasets.datasetsOf(7).map((d) => d.name)).toEqual(['sales']);
    expect(datasets.grants('ada').find((g) => g.dataset === 'sales')).toMatchObject({ userId: 7, bound: 'migrate' });
    // The rest stay name-only and count for no one.
    expect(datasets.unboundGrants().map((g) => `${g.user}/${g.dataset}`)).toEqual(['ada/scans', 'bob/sales', 'cy/sales', 'dan/sales']);
    expect(datasets.datasetsOf(21)).toEqual([]);
  });
});
