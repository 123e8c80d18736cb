/**
 * acceptPush is what the webhook answer waits for: the run and the delivery are stored before it
 * returns, and nothing else (status post, verification) starts until the answer has been written.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PushEvent } from '../intake/push-event.js';
import { aPushEvent, fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

const aPush = (after: string): PushEvent => aPushEvent(after);

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

describe('acceptPush', () => {
  it('stores the run and the delivery before returning, and starts verification only after this turn of the event loop', async () => {
    let seq = 0;
    const verified: string[] = [];
    t = await lifecycleFixture([fakeNode('n1')], () => ({
      newRunId: () => `run-${++seq}`,
      verifyPush: ({ after }) => {
        verified.push(after);
        return Promise.resolve({ ok: false as const, code: 'unsigned', reason: 'test: not signed' });
      },
    }));
    const f = t;
    const answer = await f.lifecycle.acceptPush(aPush('b'.repeat(40)), 'key-1', 'Push Hook');
    expect(answer).toEqual({ run_id: 'run-1', duplicate: false });
    // Stored: a retry of the same delivery is a duplicate at once.
    expect((await f.store.get('run-1'))?.state).toBe('received');
    expect(await f.lifecycle.acceptPush(aPush('b'.repeat(40)), 'key-1', 'Push Hook')).toEqual({ run_id: 'run-1', duplicate: true });
    // Microtasks (where the HTTP layer writes the answer) run before any background step.
    await Promise.resolve();
    await new Promise((r) => process.nextTick(r));
    expect(verified).toEqual([]);
    expect(f.statuses).toEqual([]);
    await f.settle();
    expect(verified).toEqual(['b'.repeat(40)]);
    expect(f.statuses.map((s) => s.state)).toContain('pending');
    expect((await f.store.get('run-1'))?.state).toBe('rejected');
  });

  it('idle() waits for the deferred start, so a close right after the answer loses nothing', async () => {
    let seq = 0;
    let verifications = 0;
    t = await lifecycleFixture([fakeNode('n1')], () => ({
      newRunId: () => `run-${++seq}`,
      verifyPush: () => {
        verifications++;
        return Promise.resolve({ ok: false as const, code: 'unsigned', reason: 'test: not signed' });
      },
    }));
    await t.lifecycle.acceptPush(aPush('c'.repeat(40)), 'key-2', 'Push Hook');
    await t.lifecycle.idle();
    expect(verifications).toBe(1);
    expect((await t.store.get('run-1'))?.state).toBe('rejected');
  });
});
