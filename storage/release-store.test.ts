/**
 * Release records (DESIGN §10) on both engines: the first decision stands, a patch sets only what it
 * names, held runs are found by their review, and listings keep the order records were made in.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunStore } from './run-store.js';
import type { RunState } from './run-states.js';
import { stateStores } from './state-stores.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';

const NOW = () => new Date('2026-01-02T03:04:05Z');

async function pushedRun(runs: RunStore, id: string): Promise<void> {
  await runs.createRun({
    id, projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40),
    commit: '1'.repeat(40), user: 'ada', userId: 7, deliveryKey: null, fetchUrl: 'http://x',
  });
}

/** Walk a run through the state machine to `held` (a node ran it and its results await review). */
async function heldRun(runs: RunStore, id: string): Promise<void> {
  for (const to of ['verified', 'queued', 'assigned', 'uploading', 'held'] as RunState[]) {
    expect(await runs.transition(id, to, `to ${to}`)).toMatchObject({ ok: true });
  }
}

describe.each(STATE_ENGINES)('release records (%s)', (engine) => {
  let s: ScratchStores;
  beforeEach(async () => {
    s = await scratchStores(engine, NOW);
  });
  afterEach(() => s.dispose());

  it('a run handed over twice keeps the policy of its first decision', async () => {
    await pushedRun(s.runs, 'run0000001');
    const first = await s.releases.decide('run0000001', { policy: 'review', approvalsRequired: 2, datasets: ['sales', 'icu'] });
    expect(first).toEqual({
      runId: 'run0000001',
      policy: 'review',
      approvalsRequired: 2,
      datasets: ['sales', 'icu'],
      findings: [],
      reviewProjectId: null,
      reviewBranch: null,
      reviewCommit: null,
      reviewPath: null,
      nodeEnd: null,
      nodeReason: null,
      mrIid: null,
      mrUrl: null,
      approvals: [],
      outcome: null,
      decidedBy: null,
      decidedAt: null,
      statusPosted: null,
      createdAt: '2026-01-02T03:04:05.000Z',
    });
    expect(await s.releases.decide('run0000001', { policy: 'direct', approvalsRequired: 1, datasets: [] })).toEqual(first);
    expect(await s.releases.get('run0000002')).toBeUndefined();
  });

  it('a record is only made for a run that exists', async () => {
    await expect(s.releases.decide('run9999999', { policy: 'direct', approvalsRequired: 1, datasets: [] })).rejects.toThrow();
    expect(await s.releases.list()).toEqual([]);
  });

  it('a patch sets what it names and leaves the rest, JSON fields included', async () => {
    await pushedRun(s.runs, 'run0000001');
    await s.releases.decide('run0000001', { policy: 'review', approvalsRequired: 1, datasets: ['sales'] });
    const findings = [{ file: 'outputs/table.csv', rule: 'small_cell', detail: 'a cell of 3 (< 10)' }];
    await s.releases.update('run0000001', {
      findings,
      reviewProjectId: 42,
      reviewBranch: 'secd-review/run0000001',
      reviewCommit: 'a'.repeat(40),
      reviewPath: 'outputs/secd-run0000001',
      nodeEnd: 'succeeded',
      mrIid: 5,
      mrUrl: 'http://gitlab/lab/review/-/merge_requests/5',
    });
    await s.releases.update('run0000001', { approvals: [{ user: 'olga', userId: 30, at: '2026-01-02T04:00:00.000Z' }], nodeReason: undefined });
    await s.releases.update('run0000001', {});
    expect(await s.releases.get('run0000001')).toMatchObject({
      datasets: ['sales'],
      findings,
      reviewProjectId: 42,
      reviewBranch: 'secd-review/run0000001',
      reviewCommit: 'a'.repeat(40),
      nodeEnd: 'succeeded',
      nodeReason: null,
      mrIid: 5,
      approvals: [{ user: 'olga', userId: 30, at: '2026-01-02T04:00:00.000Z' }],
      outcome: null,
    });
    await s.releases.update('run0000001', { outcome: 'released', decidedBy: 'olga', decidedAt: '2026-01-02T04:00:01.000Z', statusPosted: 'success' });
    expect(await s.releases.get('run0000001')).toMatchObject({ outcome: 'released', decidedBy: 'olga', statusPosted: 'success' });
  });

  it('the database refuses a policy or an outcome that is not one', async () => {
    await pushedRun(s.runs, 'run0000001');
    await expect(s.state.db.insertInto('run_releases').values({ run_id: 'run0000001', policy: 'maybe', approvals_required: 1, created_at: 'x' }).execute()).rejects.toThrow();
    await s.releases.decide('run0000001', { policy: 'review', approvalsRequired: 1, datasets: [] });
    await expect(s.releases.update('run0000001', { outcome: 'lost' as 'released' })).rejects.toThrow();
    expect((await s.releases.get('run0000001'))?.outcome).toBeNull();
  });

  it('held runs are listed oldest first (in the order decided within one millisecond) and found by their merge request', async () => {
    for (const id of ['run0000003', 'run0000001', 'run0000002', 'run0000004']) {
      await pushedRun(s.runs, id);
      await s.releases.decide(id, { policy: 'review', approvalsRequired: 1, datasets: ['sales'] });
    }
    for (const id of ['run0000003', 'run0000001', 'run0000002']) await heldRun(s.runs, id);
    await s.releases.update('run0000001', { reviewProjectId: 42, mrIid: 5 });
    await s.releases.update('run0000004', { reviewProjectId: 42, mrIid: 6 });
    expect((await s.releases.held()).map((r) => r.runId)).toEqual(['run0000003', 'run0000001', 'run0000002']);
    expect((await s.releases.heldByMergeRequest(42, 5))?.runId).toBe('run0000001');
    // run0000004 has a merge request but is not held.
    expect(await s.releases.heldByMergeRequest(42, 6)).toBeUndefined();
    expect(await s.releases.heldByMergeRequest(43, 5)).toBeUndefined();
    expect((await s.runs.transition('run0000001', 'succeeded', 'released')).ok).toBe(true);
    expect(await s.releases.heldByMergeRequest(42, 5)).toBeUndefined();
    expect((await s.releases.held()).map((r) => r.runId)).toEqual(['run0000003', 'run0000002']);
  });

  it('the audit listing is newest first, limited, and filtered by outcome', async () => {
    let at = Date.parse('2026-01-02T03:00:00Z');
    const later = stateStores(s.scope, () => new Date((at += 1000)));
    for (const id of ['run0000001', 'run0000002', 'run0000003']) {
      await pushedRun(s.runs, id);
      await later.releases.decide(id, { policy: 'review', approvalsRequired: 1, datasets: [] });
    }
    // Two in the same millisecond: the one decided last comes first.
    for (const id of ['run0000005', 'run0000004']) {
      await pushedRun(s.runs, id);
      await s.releases.decide(id, { policy: 'direct', approvalsRequired: 1, datasets: [] });
    }
    await s.releases.update('run0000002', { outcome: 'withheld' });
    await s.releases.update('run0000003', { outcome: 'released' });
    expect((await s.releases.list()).map((r) => r.runId)).toEqual(['run0000004', 'run0000005', 'run0000003', 'run0000002', 'run0000001']);
    expect((await s.releases.list({ limit: 2 })).map((r) => r.runId)).toEqual(['run0000004', 'run0000005']);
    expect((await s.releases.list({ outcome: 'withheld' })).map((r) => r.runId)).toEqual(['run0000002']);
    expect((await s.releases.list({ outcome: 'released', limit: 0 })).map((r) => r.runId)).toEqual(['run0000003']);
  });

  it('a decision and a run\'s transition land together or not at all', async () => {
    await pushedRun(s.runs, 'run0000001');
    await expect(
      s.transaction(async (t) => {
        await t.releases.decide('run0000001', { policy: 'review', approvalsRequired: 1, datasets: [] });
        throw new Error('node went away');
      }),
    ).rejects.toThrow('node went away');
    expect(await s.releases.get('run0000001')).toBeUndefined();
  });
});
