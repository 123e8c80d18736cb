import { describe, expect, it } from 'vitest';
import { openDatabase } from '../storage/database.js';
import { ReleaseStore } from '../storage/release-store.js';
import { RunStore } from '../storage/run-store.js';
import { aRelease, aRun } from '../test/support/status-page-fixtures.js';
import type { ApiNode } from './api-schema.js';
import { StatusFeed, type StatusSnapshot, type StatusUpdate } from './status-feed.js';

function node(id: string, util: number | null): ApiNode {
  return {
    id,
    hostname: id,
    state: 'up',
    last_seen: '2026-01-01T12:00:00.000Z',
    cpus: 8,
    memory_bytes: 1,
    load: 0.5,
    runs: [],
    gpus: [{ uuid: `GPU-${id}`, index: 0, name: 'T4', memory_total_bytes: 1, memory_used_bytes: 0, utilization_pct: util, temperature_c: 40, power_w: 20, run_id: null }],
  };
}

function harness(nodes: ApiNode[]) {
  let now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const store = new RunStore(openDatabase(':memory:'), () => new Date(now));
  const feed = new StatusFeed({ nodes: () => nodes, store, now: () => new Date(now) });
  const got: Array<{ event: string; data: StatusSnapshot | StatusUpdate }> = [];
  feed.subscribe({ send: (event, data) => got.push({ event, data: JSON.parse(data) }), end: () => got.push({ event: 'end', data: { at: '' } }) });
  return { feed, store, got, advance: (ms: number) => (now += ms) };
}

describe('status feed', () => {
  it('gives a new page the whole picture, then only the nodes that changed', () => {
    const nodes = [node('gpu-10', 5), node('gpu-2', 7)];
    const { feed, got, advance } = harness(nodes);
    expect(got[0]!.event).toBe('snapshot');
    expect((got[0]!.data as StatusSnapshot).nodes.map((n) => n.id)).toEqual(['gpu-2', 'gpu-10']);
    advance(1000);
    nodes[0] = node('gpu-10', 80);
    feed.tick(true);
    const update = got.at(-1)!.data as StatusUpdate;
    expect(update.nodes?.map((n) => n.id)).toEqual(['gpu-10']);
    expect(update.samples?.find(([uuid]) => uuid === 'GPU-gpu-10')?.[2]).toBeGreaterThan(5);
    const before = got.length;
    feed.tick(true);
    expect(got.slice(before).filter((g) => (g.data as StatusUpdate).nodes)).toEqual([]);
  });

  it('says which nodes left, and shows runs as they queue and finish, without credentials', () => {
    const nodes = [node('a', 1), node('b', 2)];
    const { feed, store, got } = harness(nodes);
    nodes.pop();
    store.createRun({ id: 'r1', projectId: 1, project: 'lab/x', ref: 'refs/heads/main', beforeSha: '0', commit: 'c'.repeat(40), user: 'u', userId: 1, deliveryKey: null, fetchUrl: 'x' });
    store.transition('r1', 'rejected', 'fetch https://oauth2:glpat-123@gitlab/lab/x.git failed');
    feed.tick(true);
    const update = got.at(-1)!.data as StatusUpdate;
    expect(update.removed).toEqual(['b']);
    expect(update.recent?.map((r) => [r.id, r.state, r.reason])).toEqual([['r1', 'rejected', 'fetch https://***@gitlab/lab/x.git failed']]);
    expect(update.queue).toBeUndefined();
  });

  it('shows held runs with their approvals as they arrive, and nothing else of their review', () => {
    const db = openDatabase(':memory:');
    const store = new RunStore(db);
    const releases = new ReleaseStore(db);
    const feed = new StatusFeed({ nodes: () => [], store, releases, now: () => new Date() });
    const run = aRun(store, { state: 'held', project: 'lab/secret-cohort', user: 'alice' });
    aRelease(releases, run.id, { approvalsRequired: 2, findings: [{ file: 'people.csv', rule: 'forbidden_column', detail: 'column 1 "ssn"' }], mrUrl: 'https://gitlab.example/mr/1' });
    aRun(store, { state: 'queued' });
    const seen: Array<{ event: string; data: StatusSnapshot & StatusUpdate }> = [];
    const anon: string[] = [];
    feed.subscribe({ send: (event, data) => seen.push({ event, data: JSON.parse(data) }), end: () => {} });
    feed.subscribe({ send: (_e, data) => anon.push(data), end: () => {}, hidden: true });
    const first = seen[0]!.data;
    expect(first.held_total).toBe(1);
    expect(first.held.map((r) => [r.id, r.project, r.review])).toEqual([[run.id, 'lab/secret-cohort', { approvals: 0, approvals_required: 2 }]]);
    expect(first.queue.map((r) => r.review)).toEqual([null]);

    releases.update(run.id, { approvals: [{ user: 'bob', userId: 2, at: new Date().toISOString() }] });
    feed.tick(true);
    const update = seen.at(-1)!.data;
    expect(update.held?.map((r) => r.review)).toEqual([{ approvals: 1, approvals_required: 2 }]);
    expect(update.recent?.find((r) => r.id === run.id)?.review).toEqual({ approvals: 1, approvals_required: 2 });

    store.transition(run.id, 'withheld', 'outputs withheld at review by olga');
    feed.tick(true);
    const after = seen.at(-1)!.data;
    expect(after.held).toEqual([]);
    expect(after.held_total).toBe(0);
    expect(after.recent?.find((r) => r.id === run.id)).toMatchObject({ state: 'withheld', review: null });

    const everything = JSON.stringify(seen) + anon.join('');
    for (const secret of ['people.csv', 'ssn', 'forbidden_column', 'bob', 'gitlab.example']) expect(everything, secret).not.toContain(secret);
    expect(anon.join('')).not.toContain('secret-cohort');
    expect((JSON.parse(anon[0]!) as StatusSnapshot).held[0]).toMatchObject({ project: '(hidden)', review: { approvals: 0, approvals_required: 2 } });
  });

  it('ends every open page when it closes', () => {
    const { feed, got } = harness([]);
    feed.close();
    expect(got.at(-1)!.event).toBe('end');
  });
});
