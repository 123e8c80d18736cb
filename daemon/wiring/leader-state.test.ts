/**
 * A leader whose MySQL state server does not answer waits for it (leader-state.ts), saying so,
 * instead of failing its start: once the server answers (here, a forwarder to the test MariaDB that
 * starts listening a second later) the state opens and migrates. A refusal that waiting cannot fix
 * (no such database) fails at once.
 */
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { Log } from '../../scheduler/common/log.js';
import { freePort } from '../../test/support/free-port.js';
import { MARIADB } from '../../test/support/mariadb.js';
import { scratchState, type ScratchState } from '../../test/support/scratch-state.js';
import { isStateUnreachable, openLeaderState } from './leader-state.js';

let scratch: ScratchState | null = null;
let forwarder: net.Server | null = null;
afterEach(async () => {
  await new Promise((r) => (forwarder ? forwarder.close(r) : r(undefined)));
  forwarder = null;
  await scratch?.dispose();
  scratch = null;
});

/** A log that keeps its lines. */
function keptLog(): { log: Log; lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const make = (): Log =>
    ({
      info: (_f: object, msg: string) => void lines.push({ level: 'info', msg }),
      warn: (_f: object, msg: string) => void lines.push({ level: 'warn', msg }),
      error: (_f: object, msg: string) => void lines.push({ level: 'error', msg }),
      debug: () => undefined,
      child: () => make(),
    }) as unknown as Log;
  return { log: make(), lines };
}

const ha = { lease_ms: 10_000 };

it('waits for a state server that does not answer yet, then opens and migrates it', async () => {
  scratch = await scratchState('mysql');
  const port = await freePort();
  const { log, lines } = keptLog();
  const opening = openLeaderState({
    state: { engine: 'mysql', host: '127.0.0.1', port, user: 'root', password: '', database: scratch.where },
    ha,
    dataDir: '/nonexistent',
    log,
    wait: { retryMs: 100, sayEveryMs: 60_000 },
  });
  await new Promise((r) => setTimeout(r, 1000));
  expect(lines.filter((l) => l.msg.startsWith('waiting for the state database'))).toHaveLength(1);
  // The server comes up: a forwarder on that port to the test MariaDB.
  forwarder = net.createServer((client) => {
    const upstream = net.connect(MARIADB.port, MARIADB.host);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => forwarder!.listen(port, '127.0.0.1', r));
  const opened = await opening;
  try {
    const lease = await opened.state.db.selectFrom('secd_lease').select('name').execute();
    expect(lease.map((l) => l.name)).toEqual(['leader']);
    expect(lines.some((l) => l.msg === 'the state database answers')).toBe(true);
  } finally {
    await opened.close();
  }
}, 30_000);

it('a database that does not exist fails the start at once, naming it', async () => {
  const { log } = keptLog();
  await expect(
    openLeaderState({ state: { engine: 'mysql', host: MARIADB.host, port: MARIADB.port, user: 'root', password: '', database: 'secd_no_such_db_x1' }, ha, dataDir: '/nonexistent', log }),
  ).rejects.toThrow(/could not open the state database mysql:\/\/.*\/secd_no_such_db_x1/);
});

it('tells an unreachable server from other failures', () => {
  expect(isStateUnreachable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
  expect(isStateUnreachable(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ETIMEDOUT' }) }))).toBe(true);
  expect(isStateUnreachable(Object.assign(new Error('Access denied'), { code: 'ER_ACCESS_DENIED_ERROR' }))).toBe(false);
});
