/**
 * A file database opened by openDatabase never checkpoints inside a commit, and its WAL still
 * reaches the database file: the worker folds it back.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, SQLITE_MODULE, type SqliteDatabase } from './database.js';
import { startWalCheckpointer } from './wal-checkpointer.js';

const dirs: string[] = [];
const open: SqliteDatabase[] = [];
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freshPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'secd-wal-'));
  dirs.push(dir);
  return join(dir, 'leader.db');
}

describe('WAL checkpoints', () => {
  it('are off in the connection and done by the worker: the rows reach the database file', async () => {
    const path = freshPath();
    const db = openDatabase(path);
    open.push(db);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    db.exec('CREATE TABLE filler (x TEXT)');
    const before = statSync(path).size;
    const insert = db.prepare('INSERT INTO filler (x) VALUES (?)');
    // ~2 MB: well past the 1000 pages at which SQLite would have checkpointed inside a commit.
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) insert.run('y'.repeat(1000));
    })();
    // Nothing in the commit itself moved the rows into the file.
    expect(statSync(path).size).toBe(before);
    const deadline = Date.now() + 10_000;
    while (statSync(path).size < before + 2_000_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(statSync(path).size).toBeGreaterThan(before + 2_000_000);
  });

  it('an in-memory database has no checkpointer (and no WAL)', () => {
    const db = openDatabase(':memory:');
    open.push(db);
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
  });

  it('refuses a period that is not a positive whole number of ms', () => {
    expect(() => startWalCheckpointer(freshPath(), 0, SQLITE_MODULE)).toThrow(/everyMs must be a positive integer \(got 0\)/);
  });

  it('reports a database it cannot open', async () => {
    const errors: string[] = [];
    startWalCheckpointer(join(freshPath(), 'missing', 'x.db'), 10, SQLITE_MODULE, (m) => errors.push(m));
    const deadline = Date.now() + 5_000;
    while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(errors.join('\n')).toMatch(/unable to open|does not exist|directory/i);
  });
});
