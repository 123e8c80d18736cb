import { describe, expect, it } from 'vitest';
import { openDatabase } from '../storage/database.js';
import { RunStore } from '../storage/run-store.js';
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

  it('ends every open page when it closes', () => {
    const { feed, got } = harness([]);
    feed.close();
    expect(got.at(-1)!.event).toBe('end');
  });
});
