/**
 * A paused leader writes nothing (DESIGN §11), with real processes on the real MariaDB: leader A
 * holds the lease and writes; it is stopped with SIGSTOP for longer than its lease; leader B takes
 * over with a higher epoch; A is continued with SIGCONT, and its next fenced write is refused by the
 * database, A reports itself standby, and not one row of A's lands after the takeover. The
 * contenders are test/support/ha-contender.ts, built (npm test builds dist/ first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { migrateState } from '../../storage/sql/state-migrate.js';
import type { StateDatabase } from '../../storage/sql/state-database.js';
import { scratchState, type ScratchState } from '../../test/support/scratch-state.js';

const CONTENDER = resolve(import.meta.dirname, '../../dist/test/support/ha-contender.js');
const LEASE_MS = 2000;

interface Contender {
  child: ChildProcess;
  events: Array<Record<string, unknown>>;
}

let scratch: ScratchState | null = null;
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
    }
  }
  await scratch?.dispose();
  scratch = null;
});

function startContender(database: string, holder: string): Contender {
  const child = spawn(process.execPath, [CONTENDER], {
    env: { ...process.env, SECD_HA_DATABASE: database, SECD_HA_HOLDER: holder, SECD_HA_LEASE_MS: String(LEASE_MS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const events: Contender['events'] = [];
  let buffer = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      buffer = buffer.slice(nl + 1);
    }
  });
  return { child, events };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function rowsOf(state: StateDatabase, holder: string): Promise<number> {
  const { rows } = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM ha_writes WHERE holder = ${holder}`.execute(state.db);
  return Number(rows[0]!.n);
}

const has = (c: Contender, match: Record<string, unknown>): boolean => c.events.some((e) => Object.entries(match).every(([k, v]) => e[k] === v));

describe('a leader paused past its lease (two processes, MariaDB)', () => {
  it('is taken over, and once continued its fenced write is refused, it reports standby, and nothing of it lands', async () => {
    if (!existsSync(CONTENDER)) throw new Error(`${CONTENDER} is missing: run "npx tsc -p tsconfig.build.json" (npm test builds first)`);
    scratch = await scratchState('mysql');
    const state = scratch.open();
    await migrateState(state);
    await sql`CREATE TABLE ha_writes (seq BIGINT AUTO_INCREMENT PRIMARY KEY, holder VARCHAR(64) NOT NULL, epoch BIGINT NOT NULL)`.execute(state.db);

    const a = startContender(scratch.where, 'leader-a');
    await waitFor('A leading and writing', () => has(a, { event: 'role', role: 'active', epoch: 1 }) && has(a, { event: 'wrote', epoch: 1 }));
    const b = startContender(scratch.where, 'leader-b');
    // B waits while A renews: a whole lease and more without a takeover.
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    expect(has(b, { event: 'role', role: 'active' })).toBe(false);

    a.child.kill('SIGSTOP');
    await waitFor('B taking over', () => has(b, { event: 'role', role: 'active', epoch: 2 }) && has(b, { event: 'wrote', epoch: 2 }));
    const aRowsAtTakeover = await rowsOf(state, 'leader-a');
    expect(aRowsAtTakeover).toBeGreaterThan(0);

    const seenBeforeContinue = a.events.length;
    a.child.kill('SIGCONT');
    await waitFor('A refused and standby', () => has(a, { event: 'refused', epoch: 1 }) && has(a, { event: 'role', role: 'standby', epoch: 1 }));
    const outcomes = a.events.slice(seenBeforeContinue).filter((e) => e.event === 'wrote' || e.event === 'refused');
    // A write the server had committed before A was stopped (while A still held the lease) is
    // reported only once A runs again: at most that one 'wrote' comes first. Its row is among
    // aRowsAtTakeover, counted after B took over (checked below: A's rows never grow after that).
    const inFlight = outcomes[0]?.event === 'wrote' ? 1 : 0;
    // Its first write after waking went to the database and was refused there, pointing at epoch 2.
    expect(outcomes[inFlight]).toEqual({ event: 'refused', epoch: 1, by: 'database', lease_epoch: 2 });
    expect(outcomes.slice(inFlight).filter((e) => e.event === 'wrote')).toEqual([]);
    // And it stays standby: B keeps the lease and keeps writing.
    const bRows = await rowsOf(state, 'leader-b');
    await new Promise((r) => setTimeout(r, LEASE_MS));
    expect(await rowsOf(state, 'leader-a')).toBe(aRowsAtTakeover);
    expect(await rowsOf(state, 'leader-b')).toBeGreaterThan(bRows);
    expect(has(a, { event: 'role', role: 'active', epoch: 3 })).toBe(false);
    const { rows } = await sql<{ holder: string; epoch: number }>`SELECT DISTINCT holder, epoch FROM ha_writes ORDER BY holder`.execute(state.db);
    expect(rows.map((r) => [r.holder, Number(r.epoch)])).toEqual([
      ['leader-a', 1],
      ['leader-b', 2],
    ]);
  });
});
