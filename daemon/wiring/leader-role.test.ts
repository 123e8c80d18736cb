/**
 * The leader roles (leader-role.ts) on the real engines: a sole SQLite leader is active from its
 * start with a new, higher epoch each time; of two leaders sharing a MariaDB database exactly one
 * is active, its writes are fenced, and when the other takes the lease the first is told once that
 * it lost it and acts no more.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { isFencedOut } from '../../storage/sql/fencing.js';
import { migrateState } from '../../storage/sql/state-migrate.js';
import { LEADER_LEASE } from '../../storage/sql/state-migrations.js';
import { stateStores } from '../../storage/state-stores.js';
import { scratchState, type ScratchState } from '../../test/support/scratch-state.js';
import { sharedLeader, soleLeader, type LeaderRole } from './leader-role.js';

let scratch: ScratchState | null = null;
const roles: LeaderRole[] = [];
afterEach(async () => {
  for (const r of roles.splice(0)) await r.stop().catch(() => undefined);
  await scratch?.dispose();
  scratch = null;
});

const until = async (what: string, check: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('the sole leader of a SQLite state', () => {
  it('is active once started, and each start leads a higher epoch', async () => {
    scratch = await scratchState('sqlite');
    const epochs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const state = scratch.open();
      await migrateState(state);
      const role = soleLeader(state, silentLog);
      expect(role.isActive()).toBe(false);
      const heard: number[] = [];
      role.whenActive((e) => heard.push(e));
      await role.start();
      expect(role.isActive()).toBe(true);
      expect(role.view()).toEqual({ role: 'active', epoch: heard[0] });
      epochs.push(role.epoch()!);
      await role.stop();
    }
    expect(epochs[1]).toBe(epochs[0]! + 1);
    expect(epochs[2]).toBe(epochs[1]! + 1);
  });
});

describe('two leaders sharing a MariaDB state', () => {
  it('one is active and writes; when the other takes the lease the first is told once, and its writes are refused', async () => {
    scratch = await scratchState('mysql');
    const a = scratch.open();
    await migrateState(a);
    const b = scratch.open();
    const first = sharedLeader(a, { leaseMs: 1500, log: silentLog });
    roles.push(first);
    const lost: string[] = [];
    first.onLost((why) => lost.push(why));
    await first.start();
    await until('the first leader to lead', () => first.isActive());
    const second = sharedLeader(b, { leaseMs: 1500, log: silentLog });
    roles.push(second);
    await second.start();
    expect(second.view().role).toBe('standby');

    // The active leader's store writes go through the fence.
    const token = await stateStores(first.activeScope).nodes.issueToken('gpu-01');
    expect(token.length).toBeGreaterThan(10);

    // Take the lease from under the first (as a takeover after its expiry would): expire it now.
    await b.db.updateTable('secd_lease').set({ expires_at_ms: 0 }).where('name', '=', LEADER_LEASE).execute();
    await until('the second leader to lead', () => second.isActive());
    expect(second.epoch()).toBeGreaterThan(1);
    const refused = await stateStores(first.activeScope).nodes.issueToken('gpu-02').catch((e: unknown) => e);
    expect(isFencedOut(refused)).toBe(true);
    await until('the first leader to hear it lost the lease', () => lost.length > 0);
    expect(first.isActive()).toBe(false);
    expect(first.epoch()).toBeNull();
    expect(lost).toHaveLength(1);
    // Nothing of the refused write landed; the intake scope of the first still stores (any leader may).
    expect((await stateStores(second.plainScope).nodes.list()).map((n) => n.id)).toEqual(['gpu-01']);
    await stateStores(first.plainScope).runs.claimDelivery('k1', 'Push Hook', async () => 'stored by a standby');
    expect((await stateStores(second.plainScope).runs.claimDelivery('k1', 'Push Hook', async () => 'again')).first).toBe(false);
  }, 30_000);
});
