import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from './database.js';
import { MIGRATIONS } from './migrations.js';
import { RunStore } from './run-store.js';
import { plainScope } from './sql/state-scope.js';
import { stateOverSqlite } from './sql/state-database.js';
import { aNewRun } from '../test/support/run-rows.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';
import { IN_FLIGHT_STATES, RUN_STATES, RUN_TRANSITIONS, isInFlight, isTerminal } from './run-states.js';

const aRun = aNewRun;

describe.each(STATE_ENGINES)('run store on %s', (engine) => {
  let stores: ScratchStores;
  let store: RunStore;
  beforeEach(async () => {
    stores = await scratchStores(engine);
    store = stores.runs;
  });
  afterEach(async () => {
    await stores.dispose();
  });

  it('records every transition in the audit log with its reason', async () => {
    await store.createRun(aRun());
    expect((await store.transition('r1', 'verified', 'all 3 commits signed')).ok).toBe(true);
    expect((await store.transition('r1', 'queued', 'waiting for a node')).ok).toBe(true);
    const run = (await store.get('r1'))!;
    expect(run.state).toBe('queued');
    expect(run.reason).toBe('waiting for a node');
    expect((await store.events('r1')).map((e) => [e.from, e.to, e.reason])).toEqual([
      [null, 'received', 'push received'],
      ['received', 'verified', 'all 3 commits signed'],
      ['verified', 'queued', 'waiting for a node'],
    ]);
  });

  it('a new run reads back as intake created it, with empty warnings and GPUs and no finish time', async () => {
    const created = await store.createRun(aRun({ userId: null, deliveryKey: null }));
    expect(created).toMatchObject({ id: 'r1', projectId: 7, user: 'alice', userId: null, deliveryKey: null, state: 'received' });
    expect(created).toMatchObject({ reason: 'push received', warnings: [], gpus: [], config: null, exitCode: null, buildLogTail: null, finishedAt: null });
    expect(await store.get('r1')).toEqual(created);
    expect(await store.get('nope')).toBeUndefined();
  });

  it('refuses a transition the table does not allow and leaves the run as it was', async () => {
    await store.createRun(aRun());
    await store.transition('r1', 'rejected', 'commit 1234abcd is not signed');
    const result = await store.transition('r1', 'queued', 'late verification');
    expect(result).toEqual({ ok: false, code: 'illegal_transition', from: 'rejected' });
    expect((await store.get('r1'))!.state).toBe('rejected');
    expect((await store.get('r1'))!.finishedAt).not.toBeNull();
    expect(await store.events('r1')).toHaveLength(2);
    expect(await store.transition('ghost', 'verified', 'x')).toEqual({ ok: false, code: 'not_found' });
  });

  it('a transition sets its patch (JSON fields as given) and a terminal one keeps a finish time it was given', async () => {
    const at = '2026-01-02T03:04:05.000Z';
    await store.createRun(aRun());
    for (const to of ['verified', 'queued'] as const) await store.transition('r1', to, to);
    const assigned = await store.transition('r1', 'assigned', 'on n1', { node: 'n1', gpus: ['GPU-a', 'GPU-b'], config: { gpus: 2, env: { A: 'x' } } });
    expect(assigned.ok && assigned.run).toMatchObject({ node: 'n1', gpus: ['GPU-a', 'GPU-b'], config: { gpus: 2, env: { A: 'x' } } });
    const failed = await store.transition('r1', 'failed', 'build failed', { exitCode: 2, buildLogTail: 'step 3/4\nerror', finishedAt: at });
    expect(failed.ok && failed.run).toMatchObject({ state: 'failed', exitCode: 2, buildLogTail: 'step 3/4\nerror', finishedAt: at, node: 'n1' });
  });

  it('transitions in one transaction land together: a throw inside leaves every run as it was', async () => {
    await store.createRun(aRun({ id: 'r1' }));
    await store.createRun(aRun({ id: 'r2', deliveryKey: 'k2' }));
    await expect(
      store.inTransaction(async (runs) => {
        await runs.transition('r1', 'verified', 'signed');
        await runs.transition('r2', 'verified', 'signed');
        throw new Error('the process died here');
      }),
    ).rejects.toThrow('the process died here');
    expect([(await store.get('r1'))!.state, (await store.get('r2'))!.state]).toEqual(['received', 'received']);
    expect(await store.events('r1')).toHaveLength(1);
    expect(await store.inTransaction(async (runs) => (await runs.transition('r1', 'verified', 'signed')).ok)).toBe(true);
    expect((await store.get('r1'))!.state).toBe('verified');
  });

  it('a re-sent delivery is recognised and does not create a second run', async () => {
    const first = await store.claimDelivery('idem-1', 'Push Hook', async (runs) => (await runs.createRun(aRun())).id);
    const again = await store.claimDelivery('idem-1', 'Push Hook', async (runs) => (await runs.createRun(aRun({ id: 'r2' }))).id);
    expect(first).toEqual({ first: true, value: 'r1' });
    expect(again).toEqual({ first: false, outcome: 'r1' });
    expect(await store.list()).toHaveLength(1);
  });

  it('a delivery whose run could not be created is not remembered: the re-sent one creates it', async () => {
    await expect(
      store.claimDelivery('idem-1', 'Push Hook', async (runs) => {
        await runs.createRun(aRun());
        throw new Error('GitLab said no');
      }),
    ).rejects.toThrow('GitLab said no');
    expect(await store.list()).toEqual([]);
    const retried = await store.claimDelivery('idem-1', 'Push Hook', async (runs) => ({ run_id: (await runs.createRun(aRun())).id }));
    expect(retried).toEqual({ first: true, value: { run_id: 'r1' } });
    expect(await store.claimDelivery('idem-1', 'Push Hook', async () => 'never')).toEqual({ first: false, outcome: { run_id: 'r1' } });
  });

  it('keeps runs, events and verified commits for another handle on the same database', async () => {
    await store.createRun(aRun());
    await store.update('r1', { gpus: ['GPU-1'], warnings: ['secd.yml: unknown key "x" ignored'] });
    await store.markVerified(7, ['a'.repeat(40), 'b'.repeat(40)], 'FPR');
    await store.markVerified(7, ['a'.repeat(40)], 'OTHER');
    const reopened = new RunStore(plainScope(stores.scratch.open()));
    expect((await reopened.get('r1'))!.gpus).toEqual(['GPU-1']);
    expect((await reopened.get('r1'))!.warnings).toEqual(['secd.yml: unknown key "x" ignored']);
    expect(await reopened.isVerified(7, 'a'.repeat(40))).toBe(true);
    expect(await reopened.isVerified(7, 'b'.repeat(40))).toBe(true);
    expect(await reopened.isVerified(8, 'a'.repeat(40))).toBe(false);
    expect(await reopened.events('r1')).toHaveLength(1);
  });

  it('marks a push of many commits verified at once', async () => {
    const shas = Array.from({ length: 1203 }, (_, i) => i.toString(16).padStart(40, '0'));
    await store.markVerified(7, shas, 'FPR');
    expect(await store.isVerified(7, shas[0]!)).toBe(true);
    expect(await store.isVerified(7, shas[1202]!)).toBe(true);
  });

  it('lists active runs of a project, skipping finished ones', async () => {
    await store.createRun(aRun({ id: 'old' }));
    await store.createRun(aRun({ id: 'done' }));
    await store.transition('done', 'rejected', 'no Dockerfile');
    await store.createRun(aRun({ id: 'other', projectId: 8 }));
    expect((await store.activeRunsOfProject(7)).map((r) => r.id)).toEqual(['old']);
  });

  it('runs created in the same millisecond keep their insert order: oldest first, newest first in the list', async () => {
    const fixed = await scratchStores(engine, () => new Date('2026-03-01T10:00:00.000Z'));
    try {
      for (const id of ['c', 'a', 'b']) await fixed.runs.createRun(aRun({ id }));
      await fixed.runs.transition('b', 'verified', 'signed');
      expect((await fixed.runs.inStates(['received', 'verified'])).map((r) => r.id)).toEqual(['c', 'a', 'b']);
      expect((await fixed.runs.list()).map((r) => r.id)).toEqual(['b', 'a', 'c']);
      expect((await fixed.runs.list({ state: 'received', limit: 1 })).map((r) => r.id)).toEqual(['a']);
      expect(await fixed.runs.inStates([])).toEqual([]);
    } finally {
      await fixed.dispose();
    }
  });

  it('a note appends an audit event without changing the state', async () => {
    await store.createRun(aRun());
    expect(await store.note('r1', 'approved by bob')).toBe(true);
    expect(await store.note('ghost', 'approved by bob')).toBe(false);
    expect((await store.events('r1')).at(-1)).toMatchObject({ from: 'received', to: 'received', reason: 'approved by bob' });
    expect((await store.get('r1'))!.reason).toBe('push received');
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

  it('finds the run a push (project, ref, before, after) started, also in a SQLite file from before the index', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'secd-push-'));
    const file = join(dir, 'secd.db');
    // A database as migrations 1-3 left it (before the index): every later migration runs on reopening.
    const old = openDatabase(file);
    old.pragma('foreign_keys = OFF');
    const tables = old.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>;
    for (const { name } of tables) old.exec(`DROP TABLE "${name}"`);
    for (const sql of MIGRATIONS.slice(0, 3)) old.exec(sql);
    old.pragma('user_version = 3');
    const oldState = stateOverSqlite(old);
    await new RunStore(plainScope(oldState)).createRun(aRun({ id: 'r-old' }));
    await oldState.close();
    old.close();
    const handle = openDatabase(file);
    const state = stateOverSqlite(handle);
    try {
      const store = new RunStore(plainScope(state));
      const r = (await store.get('r-old'))!;
      expect(await store.findPush(r.projectId, r.ref, r.beforeSha, r.commit).then((x) => x?.id)).toBe('r-old');
      expect(await store.findPush(r.projectId, r.ref, r.commit, r.beforeSha)).toBeUndefined();
      expect(await store.findPush(r.projectId + 1, r.ref, r.beforeSha, r.commit)).toBeUndefined();
    } finally {
      await state.close();
      handle.close();
    }
  });
});
