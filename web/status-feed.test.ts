import { afterEach, describe, expect, it } from 'vitest';
import { memoryStores } from '../test/support/scratch-state.js';
import { aRelease, aRun } from '../test/support/status-page-fixtures.js';
import { silentLog } from '../scheduler/common/log.js';
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

const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

async function stores(now?: () => Date) {
  const s = await memoryStores(now);
  opened.push(s);
  return s;
}

async function harness(nodes: ApiNode[]) {
  let now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const store = (await stores(() => new Date(now))).runs;
  const feed = new StatusFeed({ nodes: async () => nodes, store, now: () => new Date(now) });
  const got: Array<{ event: string; data: StatusSnapshot | StatusUpdate }> = [];
  feed.subscribe({ send: (event, data) => got.push({ event, data: JSON.parse(data) }), end: () => got.push({ event: 'end', data: { at: '' } }) });
  // The first page waits for the feed's first read of the runs.
  expect(got).toEqual([]);
  await feed.ready();
  return { feed, store, got, advance: (ms: number) => (now += ms) };
}

describe('status feed', () => {
  it('gives a new page the whole picture, then only the nodes that changed', async () => {
    const nodes = [node('gpu-10', 5), node('gpu-2', 7)];
    const { feed, got, advance } = await harness(nodes);
    expect(got[0]!.event).toBe('snapshot');
    expect((got[0]!.data as StatusSnapshot).nodes.map((n) => n.id)).toEqual(['gpu-2', 'gpu-10']);
    advance(1000);
    nodes[0] = node('gpu-10', 80);
    await feed.tick(true);
    const update = got.at(-1)!.data as StatusUpdate;
    expect(update.nodes?.map((n) => n.id)).toEqual(['gpu-10']);
    expect(update.samples?.find(([uuid]) => uuid === 'GPU-gpu-10')?.[2]).toBeGreaterThan(5);
    const before = got.length;
    await feed.tick(true);
    expect(got.slice(before).filter((g) => (g.data as StatusUpdate).nodes)).toEqual([]);
  });

  it('says which nodes left, and shows runs as they queue and finish, without credentials', async () => {
    const nodes = [node('a', 1), node('b', 2)];
    const { feed, store, got } = await harness(nodes);
    nodes.pop();
    await store.createRun({ id: 'r1', projectId: 1, project: 'lab/x', ref: 'refs/heads/main', beforeSha: '0', commit: 'c'.repeat(40), user: 'u', userId: 1, deliveryKey: null, fetchUrl: 'x' });
    await store.transition('r1', 'rejected', 'fetch https://oauth2:glpat-123@gitlab/lab/x.git failed');
    await feed.tick(true);
    const update = got.at(-1)!.data as StatusUpdate;
    expect(update.removed).toEqual(['b']);
    expect(update.recent?.map((r) => [r.id, r.state, r.reason])).toEqual([['r1', 'rejected', 'fetch https://***@gitlab/lab/x.git failed']]);
    expect(update.queue).toBeUndefined();
  });

  it('shows held runs with their approvals as they arrive, and nothing else of their review', async () => {
    const { runs: store, releases } = await stores();
    const feed = new StatusFeed({ nodes: async () => [], store, releases, now: () => new Date() });
    const run = await aRun(store, { state: 'held', project: 'lab/secret-cohort', user: 'alice' });
    await aRelease(releases, run.id, { approvalsRequired: 2, findings: [{ file: 'people.csv', rule: 'forbidden_column', detail: 'column 1 "ssn"' }], mrUrl: 'https://gitlab.example/mr/1' });
    await aRun(store, { state: 'queued' });
    const seen: Array<{ event: string; data: StatusSnapshot & StatusUpdate }> = [];
    const anon: string[] = [];
    feed.subscribe({ send: (event, data) => seen.push({ event, data: JSON.parse(data) }), end: () => {} });
    feed.subscribe({ send: (_e, data) => anon.push(data), end: () => {}, hidden: true });
    await feed.ready();
    const first = seen[0]!.data;
    expect(first.held_total).toBe(1);
    expect(first.held.map((r) => [r.id, r.project, r.review])).toEqual([[run.id, 'lab/secret-cohort', { approvals: 0, approvals_required: 2 }]]);
    expect(first.queue.map((r) => r.review)).toEqual([null]);

    await releases.update(run.id, { approvals: [{ user: 'bob', userId: 2, at: new Date().toISOString() }] });
    await feed.tick(true);
    const update = seen.at(-1)!.data;
    expect(update.held?.map((r) => r.review)).toEqual([{ approvals: 1, approvals_required: 2 }]);
    expect(update.recent?.find((r) => r.id === run.id)?.review).toEqual({ approvals: 1, approvals_required: 2 });

    await store.transition(run.id, 'withheld', 'outputs withheld at review by olga');
    await feed.tick(true);
    const after = seen.at(-1)!.data;
    expect(after.held).toEqual([]);
    expect(after.held_total).toBe(0);
    expect(after.recent?.find((r) => r.id === run.id)).toMatchObject({ state: 'withheld', review: null });

    const everything = JSON.stringify(seen) + anon.join('');
    for (const secret of ['people.csv', 'ssn', 'forbidden_column', 'bob', 'gitlab.example']) expect(everything, secret).not.toContain(secret);
    expect(anon.join('')).not.toContain('secret-cohort');
    expect((JSON.parse(anon[0]!) as StatusSnapshot).held[0]).toMatchObject({ project: '(hidden)', review: { approvals: 0, approvals_required: 2 } });
  });

  it('ends every open page when it closes', async () => {
    const { feed, got } = await harness([]);
    feed.close();
    expect(got.at(-1)!.event).toBe('end');
  });

  it('applies ticks in the order they were asked, even when an earlier tick\'s reads come back last', async () => {
    const runs = (await stores()).runs;
    // Reads as slow as `slowMs` was when they were asked: the first tick below is slow, the second fast.
    let slowMs = 0;
    const later = async <T>(read: Promise<T>): Promise<T> => {
      const ms = slowMs;
      const rows = await read;
      await new Promise((r) => setTimeout(r, ms));
      return rows;
    };
    const store = {
      inStates: (states: Parameters<typeof runs.inStates>[0]) => later(runs.inStates(states)),
      list: (opts: Parameters<typeof runs.list>[0]) => later(runs.list(opts)),
    };
    await aRun(runs, { state: 'queued', id: 'q1' });
    const feed = new StatusFeed({ nodes: async () => [], store, now: () => new Date() });
    const got: Array<{ event: string; data: StatusUpdate }> = [];
    feed.subscribe({ send: (event, data) => got.push({ event, data: JSON.parse(data) }), end: () => {} });
    await feed.ready();
    slowMs = 80;
    const first = feed.tick(true);
    await new Promise((r) => setTimeout(r, 10));
    slowMs = 0;
    await aRun(runs, { state: 'queued', id: 'q2' });
    await Promise.all([first, feed.tick(true)]);
    // The slow tick saw only q1 (no change); the fast one, asked after it, sent both: never q1 alone after.
    const queues = got.filter((g) => g.event === 'update' && g.data.queue).map((g) => g.data.queue!.map((r) => r.id));
    expect(queues).toEqual([['q1', 'q2']]);
    expect((await feed.snapshot()).queue.map((r) => r.id)).toEqual(['q1', 'q2']);
  });

  it('keeps pages on the last view while reads of the runs fail, says so in the log, and catches up after', async () => {
    const warned: string[] = [];
    const log = { ...silentLog, warn: (_o: object, msg?: string) => void warned.push(msg ?? '') };
    let fail = false;
    const runs = (await stores()).runs;
    const store = {
      inStates: (states: Parameters<typeof runs.inStates>[0]) => (fail ? Promise.reject(new Error('database is locked')) : runs.inStates(states)),
      list: (opts: Parameters<typeof runs.list>[0]) => runs.list(opts),
    };
    await aRun(runs, { state: 'queued', id: 'q1' });
    const feed = new StatusFeed({ nodes: async () => [], store, now: () => new Date(), log, pollMs: 5 });
    const got: Array<{ event: string; data: StatusUpdate }> = [];
    feed.subscribe({ send: (event, data) => got.push({ event, data: JSON.parse(data) }), end: () => {} });
    await feed.ready();
    fail = true;
    await aRun(runs, { state: 'queued', id: 'q2' });
    await expect(feed.tick(true)).rejects.toThrow('database is locked');
    feed.start();
    await new Promise((r) => setTimeout(r, 50));
    expect(warned.some((m) => m.includes('reading the runs failed'))).toBe(true);
    expect((await feed.snapshot()).queue.map((r) => r.id)).toEqual(['q1']);
    expect(got.map((g) => g.event)).toEqual(['snapshot']);
    fail = false;
    await feed.tick(true);
    feed.close();
    expect(got.find((g) => g.event === 'update')?.data.queue?.map((r) => r.id)).toEqual(['q1', 'q2']);
  });

  it('ends a page whose first snapshot cannot be read (its browser reconnects)', async () => {
    const store = { inStates: () => Promise.reject(new Error('no such table: runs')), list: () => Promise.resolve([]) };
    const feed = new StatusFeed({ nodes: async () => [], store, now: () => new Date() });
    const got: string[] = [];
    feed.subscribe({ send: (event) => got.push(event), end: () => got.push('end') });
    await expect(feed.ready()).rejects.toThrow('no such table');
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual(['end']);
  });
});
