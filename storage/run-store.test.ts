import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from './database.js';
import { MIGRATIONS } from './migrations.js';
import { RunStore } from './run-store.js';
import { aNewRun } from '../test/support/run-rows.js';
import { IN_FLIGHT_STATES, RUN_STATES, RUN_TRANSITIONS, isInFlight, isTerminal } from './run-states.js';

const aRun = aNewRun;

describe('run store', () => {
  it('records every transition in the audit log with its reason', () => {
    const store = new RunStore(openDatabase(':memory:'));
    store.createRun(aRun());
    expect(store.transition('r1', 'verified', 'all 3 commits signed').ok).toBe(true);
    expect(store.transition('r1', 'queued', 'waiting for a node').ok).toBe(true);
    const run = store.get('r1')!;
    expect(run.state).toBe('queued');
    expect(run.reason).toBe('waiting for a node');
    expect(store.events('r1').map((e) => [e.from, e.to, e.reason])).toEqual([
      [null, 'received', 'push received'],
      ['received', 'verified', 'all 3 commits signed'],
      ['verified', 'queued', 'waiting for a node'],
    ]);
  });

  it('refuses a transition the table does not allow and leaves the run as it was', () => {
    const store = new RunStore(openDatabase(':memory:'));
    store.createRun(aRun());
    store.transition('r1', 'rejected', 'commit 1234abcd is not signed');
    const result = store.transition('r1', 'queued', 'late verification');
    expect(result).toEqual({ ok: false, code: 'illegal_transition', from: 'rejected' });
    expect(store.get('r1')!.state).toBe('rejected');
    expect(store.get('r1')!.finishedAt).not.toBeNull();
    expect(store.events('r1')).toHaveLength(2);
  });

  it('transitions in one transaction land together: a throw inside leaves every run as it was', () => {
    const store = new RunStore(openDatabase(':memory:'));
    store.createRun(aRun({ id: 'r1' }));
    store.createRun(aRun({ id: 'r2', deliveryKey: 'k2' }));
    expect(() =>
      store.inTransaction(() => {
        store.transition('r1', 'verified', 'signed');
        store.transition('r2', 'verified', 'signed');
        throw new Error('the process died here');
      }),
    ).toThrow('the process died here');
    expect([store.get('r1')!.state, store.get('r2')!.state]).toEqual(['received', 'received']);
    expect(store.events('r1')).toHaveLength(1);
    expect(store.inTransaction(() => store.transition('r1', 'verified', 'signed').ok)).toBe(true);
    expect(store.get('r1')!.state).toBe('verified');
  });

  it('a re-sent delivery is recognised and does not create a second run', () => {
    const store = new RunStore(openDatabase(':memory:'));
    const first = store.claimDelivery('idem-1', 'Push Hook', () => store.createRun(aRun()).id);
    const again = store.claimDelivery('idem-1', 'Push Hook', () => store.createRun(aRun({ id: 'r2' })).id);
    expect(first).toEqual({ first: true, value: 'r1' });
    expect(again).toEqual({ first: false, outcome: 'r1' });
    expect(store.list()).toHaveLength(1);
  });

  it('keeps runs, events and verified commits across a reopen (WAL on disk)', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'secd-store-')), 'secd.db');
    const store = new RunStore(openDatabase(path));
    store.createRun(aRun());
    store.update('r1', { gpus: ['GPU-1'], warnings: ['secd.yml: unknown key "x" ignored'] });
    store.markVerified(7, ['a'.repeat(40)], 'FPR');
    const reopened = new RunStore(openDatabase(path));
    expect(reopened.get('r1')!.gpus).toEqual(['GPU-1']);
    expect(reopened.get('r1')!.warnings).toEqual(['secd.yml: unknown key "x" ignored']);
    expect(reopened.isVerified(7, 'a'.repeat(40))).toBe(true);
    expect(reopened.isVerified(8, 'a'.repeat(40))).toBe(false);
  });

  it('lists active runs of a project, skipping finished ones', () => {
    const store = new RunStore(openDatabase(':memory:'));
    store.createRun(aRun({ id: 'old' }));
    store.createRun(aRun({ id: 'done' }));
    store.transition('done', 'rejected', 'no Dockerfile');
    store.createRun(aRun({ id: 'other', projectId: 8 }));
    expect(store.activeRunsOfProject(7).map((r) => r.id)).toEqual(['old']);
  });
});

describe('run state table', () => {
  it('every terminal state is reachable and nothing leaves a terminal state', () => {
    const reachable = new Set<string>(['received']);
    for (let i = 0; i < RUN_STATES.length; i++)
      for (const s of [...reachable]) for (const t of RUN_TRANSITIONS[s as keyof typeof RUN_TRANSITIONS]) reachable.add(t);
    expect([...reachable].sort()).toEqual([...RUN_STATES].sort());
    for (const s of RUN_STATES) if (isTerminal(s)) expect(RUN_TRANSITIONS[s]).toEqual([]);
  });

  it('a run is in flight from its assignment until it ends, and only a run in flight can be lost with its node', () => {
    expect(RUN_STATES.filter(isInFlight)).toEqual([...IN_FLIGHT_STATES]);
    for (const s of RUN_STATES) {
      expect(RUN_TRANSITIONS[s].includes('lost'), s).toBe(isInFlight(s));
      if (isInFlight(s)) expect(isTerminal(s), s).toBe(false);
    }
    expect(RUN_TRANSITIONS.queued).toContain('assigned');
  });

  it('finds the run a push (project, ref, before, after) started, also in a database from before the index', () => {
    const dir = mkdtempSync(join(tmpdir(), 'secd-push-'));
    const file = join(dir, 'secd.db');
    // A database as migrations 1-3 left it (before the index): every later migration runs on reopening.
    const old = openDatabase(file);
    old.pragma('foreign_keys = OFF');
    const tables = old.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>;
    for (const { name } of tables) old.exec(`DROP TABLE "${name}"`);
    for (const sql of MIGRATIONS.slice(0, 3)) old.exec(sql);
    old.pragma('user_version = 3');
    new RunStore(old).createRun(aRun({ id: 'r-old' }));
    old.close();
    const store = new RunStore(openDatabase(file));
    const r = store.get('r-old')!;
    expect(store.findPush(r.projectId, r.ref, r.beforeSha, r.commit)?.id).toBe('r-old');
    expect(store.findPush(r.projectId, r.ref, r.commit, r.beforeSha)).toBeUndefined();
    expect(store.findPush(r.projectId + 1, r.ref, r.beforeSha, r.commit)).toBeUndefined();
  });
});
