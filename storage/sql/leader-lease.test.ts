/**
 * The leader lease and fencing on both engines (storage/sql/leader-lease.ts, fencing.ts): two
 * contenders, one wins; the epoch rises on every takeover; expiry is the database's clock, not the
 * process's; an ex-leader's fenced transaction changes nothing and throws FencedOut.
 */
import { sql } from 'kysely';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FencedOut, inFencedTransaction } from './fencing.js';
import { LeaderLease } from './leader-lease.js';
import { readDatabaseNowMs, type StateDatabase } from './state-database.js';
import { migrateState } from './state-migrate.js';
import { scratchState, STATE_ENGINES, type ScratchState } from '../../test/support/scratch-state.js';

let scratch: ScratchState | null = null;
afterEach(async () => {
  vi.restoreAllMocks();
  await scratch?.dispose();
  scratch = null;
});

/**
 * Two leaders' handles on one fresh, migrated database. On MySQL two pools; on SQLite one handle
 * shared by both: better-sqlite3 is synchronous, so two handles in ONE process waiting on each
 * other's lock would block the thread (two processes on one file are fine; one leader is the
 * SQLite deployment anyway).
 */
async function twoLeaders(engine: 'sqlite' | 'mysql'): Promise<[StateDatabase, StateDatabase]> {
  scratch = await scratchState(engine);
  const a = scratch.open();
  await migrateState(a);
  return [a, engine === 'mysql' ? scratch.open() : a];
}

/** Wait until the database's clock has passed `ms`. */
async function untilDatabaseTime(state: StateDatabase, ms: number): Promise<void> {
  while ((await readDatabaseNowMs(state)) <= ms) await new Promise((r) => setTimeout(r, 25));
}

async function createProbe(state: StateDatabase): Promise<void> {
  await sql`CREATE TABLE fence_probe (who VARCHAR(64) NOT NULL, epoch BIGINT NOT NULL)`.execute(state.db);
}

async function probeRows(state: StateDatabase): Promise<Array<{ who: string; epoch: number }>> {
  const { rows } = await sql<{ who: string; epoch: number }>`SELECT who, epoch FROM fence_probe ORDER BY who, epoch`.execute(state.db);
  return rows.map((r) => ({ who: r.who, epoch: Number(r.epoch) }));
}

describe.each(STATE_ENGINES)('the leader lease on %s', (engine) => {
  it('two contenders for a fresh lease: exactly one wins, at epoch 1, and the other is told who holds it', async () => {
    const [a, b] = await twoLeaders(engine);
    const results = await Promise.all([new LeaderLease(a).acquire('leader-a', 5000), new LeaderLease(b).acquire('leader-b', 5000)]);
    const winners = results.filter((r) => r.won);
    expect(winners).toHaveLength(1);
    expect(winners[0]!.epoch).toBe(1);
    const loser = results.find((r) => !r.won)!;
    expect(loser).toMatchObject({ won: false, epoch: 1 });
    const row = await new LeaderLease(a).read();
    expect(['leader-a', 'leader-b']).toContain(row.holder);
    expect(!loser.won && loser.holder).toBe(row.holder);
  });

  it('the holder renews; a contender waits until the lease expires by the database clock, then takes it with a higher epoch', async () => {
    const [a, b] = await twoLeaders(engine);
    const la = new LeaderLease(a);
    const lb = new LeaderLease(b);
    const first = await la.acquire('leader-a', 400);
    expect(first).toMatchObject({ won: true, epoch: 1 });
    expect(await la.renew('leader-a', 1, 400)).toBe(true);
    expect(await lb.acquire('leader-b', 400)).toMatchObject({ won: false, holder: 'leader-a', epoch: 1 });

    const { expiresAtMs } = await la.read();
    await untilDatabaseTime(b, expiresAtMs);
    // Expired: the holder cannot renew it any more, even though nobody has taken it yet.
    expect(await la.renew('leader-a', 1, 400)).toBe(false);
    expect(await lb.acquire('leader-b', 400)).toMatchObject({ won: true, epoch: 2 });
    expect(await la.acquire('leader-a', 400)).toMatchObject({ won: false, holder: 'leader-b', epoch: 2 });

    // And once more: every takeover raises the epoch.
    await untilDatabaseTime(a, (await la.read()).expiresAtMs);
    expect(await la.acquire('leader-a', 400)).toMatchObject({ won: true, epoch: 3 });
  });

  it("a contender whose own clock runs an hour ahead still cannot take a lease the database's clock says is held", async () => {
    const [a, b] = await twoLeaders(engine);
    await new LeaderLease(a).acquire('leader-a', 5000);
    const ahead = Date.now() + 3_600_000;
    vi.spyOn(Date, 'now').mockReturnValue(ahead);
    vi.spyOn(performance, 'now').mockReturnValue(performance.timeOrigin + 3_600_000);
    const r = await new LeaderLease(b).acquire('leader-b', 5000);
    expect(r).toMatchObject({ won: false, holder: 'leader-a', epoch: 1 });
    expect(r.expiresAtMs).toBeGreaterThan(r.nowMs);
    expect(r.nowMs).toBeLessThan(ahead - 3_000_000);
  });

  it('a released lease is taken at once by a standby, with the next epoch; a stale holder cannot release it again', async () => {
    const [a, b] = await twoLeaders(engine);
    await new LeaderLease(a).acquire('leader-a', 60_000);
    expect(await new LeaderLease(a).release('leader-a', 1)).toBe(true);
    expect(await new LeaderLease(b).acquire('leader-b', 60_000)).toMatchObject({ won: true, epoch: 2 });
    expect(await new LeaderLease(a).release('leader-a', 1)).toBe(false);
    expect(await new LeaderLease(a).read()).toMatchObject({ holder: 'leader-b', epoch: 2 });
  });

  it('refuses nonsense: an empty holder, a lease of no time', async () => {
    const [a] = await twoLeaders(engine);
    await expect(new LeaderLease(a).acquire('', 1000)).rejects.toThrow('a lease holder is 1 to 255 characters');
    await expect(new LeaderLease(a).acquire('x', 0)).rejects.toThrow('a lease lasts a whole number of milliseconds, at least 1 (got 0)');
  });
});

describe.each(STATE_ENGINES)('fenced transactions on %s', (engine) => {
  it("the leader's fenced write lands; after a takeover the ex-leader's changes nothing and throws FencedOut naming the new epoch", async () => {
    const [a, b] = await twoLeaders(engine);
    await createProbe(a);
    await new LeaderLease(a).acquire('leader-a', 300);
    await inFencedTransaction(a, 1, (trx) => sql`INSERT INTO fence_probe (who, epoch) VALUES ('a', 1)`.execute(trx));

    await untilDatabaseTime(b, (await new LeaderLease(b).read()).expiresAtMs);
    expect(await new LeaderLease(b).acquire('leader-b', 60_000)).toMatchObject({ won: true, epoch: 2 });

    const err = await inFencedTransaction(a, 1, async (trx) => {
      await sql`INSERT INTO fence_probe (who, epoch) VALUES ('a', 1)`.execute(trx);
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FencedOut);
    expect((err as FencedOut).message).toBe('refused a write at epoch 1: the lease is at epoch 2, held by leader-b');
    await inFencedTransaction(b, 2, (trx) => sql`INSERT INTO fence_probe (who, epoch) VALUES ('b', 2)`.execute(trx));
    expect(await probeRows(a)).toEqual([
      { who: 'a', epoch: 1 },
      { who: 'b', epoch: 2 },
    ]);
  });

  it('a leader whose lease expired changes nothing even when nobody has taken it over yet', async () => {
    const [a] = await twoLeaders(engine);
    await createProbe(a);
    await new LeaderLease(a).acquire('leader-a', 200);
    await untilDatabaseTime(a, (await new LeaderLease(a).read()).expiresAtMs);
    const err = await inFencedTransaction(a, 1, (trx) => sql`INSERT INTO fence_probe (who, epoch) VALUES ('a', 1)`.execute(trx)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FencedOut);
    expect((err as Error).message).toMatch(/^refused a write at epoch 1: the lease expired \d+ ms ago by the database's clock$/);
    expect(await probeRows(a)).toEqual([]);
  });

  it('what the fenced function wrote is rolled back with it when it throws', async () => {
    const [a] = await twoLeaders(engine);
    await createProbe(a);
    await new LeaderLease(a).acquire('leader-a', 60_000);
    await expect(
      inFencedTransaction(a, 1, async (trx) => {
        await sql`INSERT INTO fence_probe (who, epoch) VALUES ('a', 1)`.execute(trx);
        throw new Error('planner bug (pretend)');
      }),
    ).rejects.toThrow('planner bug (pretend)');
    expect(await probeRows(a)).toEqual([]);
  });
});

describe('fenced transactions on mysql, racing a takeover', () => {
  it('a takeover waits for the fenced transaction holding the lease row, and the ex-leader cannot write after it', async () => {
    const [a, b] = await twoLeaders('mysql');
    await createProbe(a);
    await new LeaderLease(a).acquire('leader-a', 500);
    let takeover: Promise<unknown> | null = null;
    let aStillWriting = true;
    let settledWhileAWrote: boolean | null = null;
    await inFencedTransaction(a, 1, async (trx) => {
      // The lease runs out while this transaction holds its row; the contender's UPDATE must wait.
      await untilDatabaseTime(b, (await new LeaderLease(b).read()).expiresAtMs + 100);
      takeover = new LeaderLease(b).acquire('leader-b', 60_000).then((r) => ((settledWhileAWrote = aStillWriting), r));
      await new Promise((r) => setTimeout(r, 300));
      await sql`INSERT INTO fence_probe (who, epoch) VALUES ('a', 1)`.execute(trx);
      aStillWriting = false;
    });
    expect(await takeover).toMatchObject({ won: true, epoch: 2 });
    expect(settledWhileAWrote).toBe(false);
    await expect(inFencedTransaction(a, 1, (trx) => sql`INSERT INTO fence_probe (who, epoch) VALUES ('a', 1)`.execute(trx))).rejects.toBeInstanceOf(FencedOut);
    expect(await probeRows(a)).toEqual([{ who: 'a', epoch: 1 }]);
  });
});

describe.each(STATE_ENGINES)('seizing the lease on %s (the one leader of a SQLite file)', (engine) => {
  it('takes it from whoever holds it, at a higher epoch, leaving no expiry for anyone to wait on', async () => {
    const [a] = await twoLeaders(engine);
    const lease = new LeaderLease(a);
    const held = await lease.acquire('leader-a', 60_000);
    expect(held.won).toBe(true);
    const epoch = await lease.seize('leader-b');
    expect(epoch).toBe(held.epoch + 1);
    expect(await lease.read()).toMatchObject({ holder: 'leader-b', epoch, expiresAtMs: 0 });
    expect(await lease.seize('leader-b')).toBe(epoch + 1);
  });
});
