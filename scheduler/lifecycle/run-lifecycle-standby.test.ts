/**
 * A lifecycle of a standby leader (DESIGN §11): a push it is sent is stored — the delivery once,
 * its run `received` — and nothing else starts (no status, no verification). The active leader picks
 * such runs up (pickUpStoredPushes): each one is checked once, however often it looks.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PushEvent } from '../intake/push-event.js';
import { aPushEvent, fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

const aPush = (after: string): PushEvent => aPushEvent(after);

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

describe('a standby leader', () => {
  it('stores a push it is sent and starts nothing; as the active leader it checks each stored push once', async () => {
    let active = false;
    let seq = 0;
    const verified: string[] = [];
    t = await lifecycleFixture([fakeNode('n1')], () => ({
      isActive: () => active,
      newRunId: () => `run-${++seq}`,
      verifyPush: ({ after }) => {
        verified.push(after);
        return Promise.resolve({ ok: false as const, code: 'unsigned', reason: 'test: not signed' });
      },
    }));
    const f = t;
    expect(await f.lifecycle.acceptPush(aPush('b'.repeat(40)), 'key-1', 'Push Hook')).toEqual({ run_id: 'run-1', duplicate: false });
    expect(await f.lifecycle.acceptPush(aPush('b'.repeat(40)), 'key-1', 'Push Hook')).toEqual({ run_id: 'run-1', duplicate: true });
    // A standby's poll does nothing either.
    f.lifecycle.pickUpStoredPushes();
    await f.settle();
    expect(verified).toEqual([]);
    expect(f.statuses).toEqual([]);
    expect((await f.store.get('run-1'))?.state).toBe('received');

    // This leader becomes active: its polls pick the stored push up, once.
    active = true;
    f.lifecycle.pickUpStoredPushes();
    f.lifecycle.pickUpStoredPushes();
    await f.settle();
    f.lifecycle.pickUpStoredPushes();
    await f.settle();
    expect(verified).toEqual(['b'.repeat(40)]);
    expect(f.statuses.filter((s) => s.state === 'pending')).toHaveLength(1);
    expect((await f.store.get('run-1'))?.state).toBe('rejected');
  });

  it('an active leader\'s own push, still being checked while its polls look, is verified once and told pending once', async () => {
    let seq = 0;
    let verifications = 0;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    t = await lifecycleFixture([fakeNode('n1')], () => ({
      isActive: () => true,
      newRunId: () => `run-${++seq}`,
      verifyPush: async () => {
        verifications++;
        await held; // still `received` while the polls look
        return { ok: false as const, code: 'unsigned', reason: 'test: not signed' };
      },
    }));
    const f = t;
    await f.lifecycle.acceptPush(aPush('c'.repeat(40)), 'key-2', 'Push Hook');
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      f.lifecycle.pickUpStoredPushes();
    }
    release();
    await f.settle();
    expect(verifications).toBe(1);
    // Its one `pending` status: a second pick-up would post another and queue a second check.
    expect(f.statuses.filter((s) => s.state === 'pending')).toHaveLength(1);
  });
});
