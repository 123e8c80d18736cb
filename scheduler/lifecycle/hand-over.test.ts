/**
 * A run between its assignment and its node (hand-over.ts): the planning round committed it, the
 * hand-over is still reading what to send, and a newer push of its branch supersedes it then. The
 * run ends cancelled in the state and is never sent; its node is not told to stop a run it never
 * had. The lifecycle over a real in-memory store whose reads of that run can be held.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunRow } from '../../storage/run-store.js';
import type { PushEvent } from '../intake/push-event.js';
import { aPushEvent, fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

const aPush = (before: string, after: string): PushEvent => aPushEvent(after, before);

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400 && !(await check()); i++) await new Promise((r) => setTimeout(r, 5));
  expect(await check()).toBe(true);
}

describe('a run superseded while it is handed over', () => {
  it('ends cancelled, is never sent to its node, and its node is not told to stop it', async () => {
    const node = fakeNode('n1', { cpuSlots: 4 });
    let seq = 0;
    // Reads of a held run in state `assigned` wait for `open()`: the hand-over's look before it sends.
    let holdRun: string | null = null;
    let heldNow = false;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    t = await lifecycleFixture([node], ({ store }) => {
      const holding = Object.create(store) as typeof store;
      holding.get = async (id: string): Promise<RunRow | undefined> => {
        const row = await store.get(id);
        if (id === holdRun && row?.state === 'assigned') {
          heldNow = true;
          await gate;
        }
        return row;
      };
      return {
        store: holding,
        newRunId: () => `run-${++seq}`,
        verifyPush: ({ after }) => Promise.resolve({ ok: true, commits: [after], head: { sha: after, fingerprint: 'F'.repeat(40), username: 'ada' } }),
        readFileAt: (_p, _sha, path) => Promise.resolve(path === 'Dockerfile' ? Buffer.from('FROM busybox\n') : null),
      };
    });
    const f = t;
    holdRun = 'run-1';
    await f.lifecycle.acceptPush(aPush(A, B), 'key-b', 'Push Hook');
    // run-1 is checked, queued and assigned; its hand-over now waits on its read.
    await until(() => heldNow);
    expect((await f.store.get('run-1'))?.state).toBe('assigned');
    expect(node.assigned).toEqual([]);

    try {
      await f.lifecycle.acceptPush(aPush(B, C), 'key-c', 'Push Hook');
      await until(async () => (await f.stores.runs.get('run-1'))?.state === 'cancelled');
    } finally {
      // Also when the run was not cancelled: the held hand-over must end for the fixture to close.
      open();
    }
    await f.settle();

    expect(await f.store.get('run-1')).toMatchObject({ state: 'cancelled', reason: expect.stringContaining('superseded by a newer push') });
    expect(node.assigned.map((s) => s.runId)).toEqual(['run-2']);
    expect(node.cancelled).toEqual([]);
    expect(f.statuses.filter((s) => s.sha === B).map((s) => s.state)).toContain('canceled');
  });
});
