/**
 * A leader contender in a process of its own, for scheduler/ha/leadership-process.test.ts: it runs
 * a Leadership on the test MariaDB database SECD_HA_DATABASE (lease SECD_HA_LEASE_MS ms, holder
 * SECD_HA_HOLDER) and, every 50 ms once it has led, makes one fenced write at the epoch it led —
 * straight to storage/sql/fencing.ts, so that a write after it lost the lease is judged by the
 * database, whatever the process believes. It reports on stdout, one JSON object a line:
 *   {"event":"role","role":"active"|"standby","epoch":N,"reason":"…"}
 *   {"event":"wrote","epoch":N}
 *   {"event":"refused","epoch":N,"by":"database"|"process","lease_epoch":N|null}
 * SIGTERM stops it (stepping down, releasing the lease).
 */
import { sql } from 'kysely';
import { silentLog } from '../../scheduler/common/log.js';
import { Leadership } from '../../scheduler/ha/leadership.js';
import { inFencedTransaction, isFencedOut } from '../../storage/sql/fencing.js';
import { openMysqlState } from '../../storage/sql/state-database.js';
import { MARIADB, MARIADB_ADMIN } from './mariadb.js';

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const holder = need('SECD_HA_HOLDER');
const state = openMysqlState({ endpoint: MARIADB, login: MARIADB_ADMIN, database: need('SECD_HA_DATABASE') });
const leadership = new Leadership({ state, holder, leaseMs: Number(need('SECD_HA_LEASE_MS')), log: silentLog });
const say = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

let led: number | null = null;
leadership.onRoleChange((c) => {
  if (c.role === 'active') led = c.epoch;
  say({ event: 'role', role: c.role, epoch: c.epoch, reason: c.reason });
});

let writing = false;
const writer = setInterval(() => {
  if (led === null || writing) return;
  const epoch = led;
  writing = true;
  inFencedTransaction(state, epoch, (trx) => sql`INSERT INTO ha_writes (holder, epoch) VALUES (${holder}, ${epoch})`.execute(trx))
    .then(() => say({ event: 'wrote', epoch }))
    .catch((err: unknown) => {
      if (!isFencedOut(err)) return say({ event: 'error', message: String(err) });
      // One refusal reported per epoch led; it writes again only once it leads again.
      if (led === epoch) led = null;
      say({ event: 'refused', epoch, by: err.lease ? 'database' : 'process', lease_epoch: err.lease?.epoch ?? null });
    })
    .finally(() => (writing = false));
}, 50);

process.on('SIGTERM', () => {
  clearInterval(writer);
  void leadership
    .stop()
    .then(() => state.close())
    .finally(() => process.exit(0));
});

leadership.start();
