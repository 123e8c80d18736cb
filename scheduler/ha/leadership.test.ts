/**
 * The leadership loop on both engines (scheduler/ha/leadership.ts): one of two leaders is active;
 * a stopped leader hands over with a higher epoch; a leader that cannot renew steps down at its own
 * monotonic deadline and says so; an ex-leader that still believes it leads is refused by the
 * database and steps down. The paused-process story, with real processes, is leadership-process.test.ts.
 */
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../common/log.js';
import { FencedOut } from '../../storage/sql/fencing.js';
import { LeaderLease } from '../../storage/sql/leader-lease.js';
import type { StateDatabase } from '../../storage/sql/state-database.js';
import { migrateState } from '../../storage/sql/state-migrate.js';
import { scratchState, STATE_ENGINES, type ScratchState } from '../../test/support/scratch-state.js';
import { Leadership, type RoleChange } from './leadership.js';

let scratch: ScratchState | null = null;
const started: Leadership[] = [];
afterEach(async () => {
  for (const l of started.splice(0)) await l.stop();
  await scratch?.dispose();
  scratch = null;
});

async function migrated(engine: 'sqlite' | 'mysql'): Promise<ScratchState> {
  scratch = await scratchState(engine);
  await migrateState(scratch.open());
  return scratch;
}

/** A second handle on MySQL; the same one on SQLite (one process: see leader-lease.test.ts). */
function handle(s: ScratchState, shared: StateDatabase): StateDatabase {
  return s.engine === 'mysql' ? s.open() : shared;
}

function leadership(state: StateDatabase, holder: string, leaseMs: number, monotonicMs?: () => number): { l: Leadership; heard: RoleChange[] } {
  const l = new Leadership({ state, holder, leaseMs, log: silentLog, ...(monotonicMs ? { monotonicMs } : {}) });
  const heard: RoleChange[] = [];
  l.onRoleChange((c) => heard.push(c));
  started.push(l);
  return { l, heard };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(STATE_ENGINES)('leadership on %s', (engine) => {
  it('one of two leaders becomes active; when it stops, the other takes over with a higher epoch', async () => {
    const s = await migrated(engine);
    const shared = s.open();
    const a = leadership(shared, 'leader-a', 300);
    const b = leadership(handle(s, shared), 'leader-b', 300);
    a.l.start();
    b.l.start();
    await waitFor('a leader', () => a.l.isActive() || b.l.isActive());
    // Several renewals later it is still exactly one.
    await new Promise((r) => setTimeout(r, 500));
    const [first, second] = a.l.isActive() ? [a, b] : [b, a];
    expect(second.l.isActive()).toBe(false);
    expect(first.l.view()).toEqual({ role: 'active', epoch: 1 });
    expect(first.heard).toEqual([{ role: 'active', epoch: 1, reason: 'acquired the lease' }]);

    await first.l.stop();
    expect(first.heard.at(-1)).toEqual({ role: 'standby', epoch: 1, reason: 'stopped' });
    // Released, not left to expire: the other takes over at its next try.
    await waitFor('the takeover', () => second.l.isActive(), 2000);
    expect(second.l.view()).toEqual({ role: 'active', epoch: 2 });
    expect(first.l.view()).toEqual({ role: 'standby', epoch: 1 });
  });

  it('a leader that cannot reach its database steps down at its own deadline and tells its listeners', async () => {
    const s = await migrated(engine);
    const state = s.open();
    const a = leadership(state, 'leader-a', 600);
    a.l.start();
    await waitFor('leading', () => a.l.isActive());
    // The database goes away under it: every renewal fails from now on.
    await state.close();
    await waitFor('stepping down', () => a.heard.length === 2, 5000);
    expect(a.heard[1]).toEqual({ role: 'standby', epoch: 1, reason: 'lease not renewed before its deadline' });
    expect(a.l.isActive()).toBe(false);
  });

  it('a leader whose monotonic deadline has passed refuses to act before asking the database', async () => {
    const s = await migrated(engine);
    let offset = 0;
    const a = leadership(s.open(), 'leader-a', 60_000, () => performance.now() + offset);
    a.l.start();
    await waitFor('leading', () => a.l.isActive());
    offset = 60_000; // as if the process had been stopped for a whole lease
    const err = await a.l.inFencedTransaction(async () => 'never').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FencedOut);
    expect((err as FencedOut).lease).toBeNull();
    expect(a.heard.at(-1)).toEqual({ role: 'standby', epoch: 1, reason: 'lease not renewed before its deadline' });
  });

  it('an ex-leader that still believes it leads is refused by the database, writes nothing, and steps down', async () => {
    const s = await migrated(engine);
    const shared = s.open();
    await sql`CREATE TABLE fence_probe (who VARCHAR(64) NOT NULL)`.execute(shared.db);
    // Its clock stands still and its renewals are far apart: only the database can tell it.
    const a = leadership(shared, 'leader-a', 60_000, () => 0);
    a.l.start();
    await waitFor('leading', () => a.l.isActive());
    await a.l.inFencedTransaction((trx) => sql`INSERT INTO fence_probe (who) VALUES ('a')`.execute(trx));

    // Its lease runs out behind its back and another leader takes over.
    const other = handle(s, shared);
    await sql`UPDATE secd_lease SET expires_at_ms = 0`.execute(other.db);
    expect(await new LeaderLease(other).acquire('leader-b', 60_000)).toMatchObject({ won: true, epoch: 2 });

    expect(a.l.isActive()).toBe(true);
    const err = await a.l.inFencedTransaction((trx) => sql`INSERT INTO fence_probe (who) VALUES ('a')`.execute(trx)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FencedOut);
    expect((err as FencedOut).lease).toMatchObject({ epoch: 2, holder: 'leader-b' });
    expect(a.heard.at(-1)).toMatchObject({ role: 'standby', epoch: 1 });
    expect(a.heard.at(-1)!.reason).toContain('a fenced write was refused');
    expect(a.l.view()).toEqual({ role: 'standby', epoch: 2 });
    const { rows } = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM fence_probe`.execute(shared.db);
    expect(Number(rows[0]!.n)).toBe(1);
    // Its release on stepping down did not touch the new leader's lease.
    await new Promise((r) => setTimeout(r, 100));
    expect(await new LeaderLease(other).read()).toMatchObject({ holder: 'leader-b', epoch: 2 });
    expect((await new LeaderLease(other).read()).expiresAtMs).toBeGreaterThan(0);
  });

  it('refuses a lease too short to renew at a third of it', async () => {
    const s = await migrated(engine);
    expect(() => new Leadership({ state: s.open(), holder: 'x', leaseMs: 2, log: silentLog })).toThrow('ha.lease_ms must be a whole number of at least 3 (got 2)');
  });
});

describe('a standby waiting for a lease to expire (MariaDB)', () => {
  it('tries at the expiry it was told, not a renewal later: a dead holder is replaced within a round trip of its lease running out', async () => {
    const s = await migrated('mysql');
    const state = s.open();
    // A holder that died: the lease runs out 3.5 s from now by the database's clock, and nobody renews it.
    await sql`UPDATE secd_lease SET holder = 'dead-leader', epoch = epoch + 1, expires_at_ms = (TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000) + 3500 WHERE name = 'leader'`.execute(state.db);
    const expiresAt = Number((await new LeaderLease(state).read()).expiresAtMs);
    // Ticks every 3 s (lease 9 s): at 0 and 3 s it is refused; the next tick would be at 6 s.
    const { l } = leadership(state, 'standby', 9000);
    l.start();
    await waitFor('the standby to take over', () => l.isActive(), 15_000);
    const row = await new LeaderLease(state).read();
    expect(row.holder).toBe('standby');
    expect(row.acquiredAtMs - expiresAt).toBeGreaterThanOrEqual(0);
    // On the tick grid it would be about 2.5 s after the expiry.
    expect(row.acquiredAtMs - expiresAt).toBeLessThan(1500);
  }, 20_000);
});
