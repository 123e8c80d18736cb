/** The API's node list over the async run store: each node with its runs in flight, rebuilt only when it changed. */
import { describe, expect, it } from 'vitest';
import type { NodeView } from '../scheduler/cluster/node-view.js';
import type { RunRow } from '../storage/run-store.js';
import { memoryStores } from '../test/support/scratch-state.js';
import { aRun } from '../test/support/status-page-fixtures.js';
import { apiNodeList } from './api-nodes.js';

const view = (id: string): NodeView => ({ id, state: 'up', lastSeen: '2026-12-01T12:00:00.000Z', hello: null, status: null });

describe('apiNodeList', () => {
  it('lists each node with the runs the store has in flight on it, keeps an unchanged node\'s object, rebuilds one whose runs moved', async () => {
    const stores = await memoryStores();
    try {
      const views = [view('gpu-01'), view('gpu-02')];
      const list = apiNodeList({ views: () => views, inFlight: () => stores.runs.inStates(['assigned', 'building', 'running', 'uploading']) });
      const running: RunRow = await aRun(stores.runs, { state: 'running', node: 'gpu-01', gpus: ['GPU-a'] });
      await aRun(stores.runs, { state: 'succeeded', node: 'gpu-02' });
      const first = await list();
      expect(first.map((n) => [n.id, n.runs])).toEqual([
        ['gpu-01', [running.id]],
        ['gpu-02', []],
      ]);
      const again = await list();
      expect(again[0]).toBe(first[0]);
      expect(again[1]).toBe(first[1]);
      await stores.runs.transition(running.id, 'uploading', 'pushing results');
      await stores.runs.transition(running.id, 'succeeded', 'exit code 0');
      const after = await list();
      expect(after[0]).not.toBe(first[0]);
      expect(after[0]!.runs).toEqual([]);
      expect(after[1]).toBe(first[1]);
    } finally {
      await stores.close();
    }
  });
});
