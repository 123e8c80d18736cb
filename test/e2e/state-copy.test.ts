/**
 * `secd admin state copy --from sqlite --to mysql --config leader.yml` as an operator runs it to
 * move a leader onto MariaDB (DESIGN §11): the leader's runs, nodes and datasets arrive in the
 * database the config's `state:` names, where the stores read them back; the epoch is carried; and
 * each way of getting it wrong (the config still says sqlite, no secd.db, a database already in use,
 * a leader still running, a wrong direction) is refused with exit status 2 and a sentence that says
 * what to do.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openStateDatabase, type OpenState } from '../../daemon/wiring/leader-state.js';
import { LEADER_LEASE } from '../../storage/sql/state-migrations.js';
import { migrateState } from '../../storage/sql/state-migrate.js';
import { plainScope } from '../../storage/sql/state-scope.js';
import { stateStores, type StateStores } from '../../storage/state-stores.js';
import { freePort } from '../support/free-port.js';
import { MARIADB, MARIADB_ADMIN } from '../support/mariadb.js';
import { scratchState, type ScratchState } from '../support/scratch-state.js';
import { runSecd as secd } from '../support/secd-cli.js';

const GITLAB = 'gitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n';

let root: string;
const scratches: ScratchState[] = [];
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-state-copy-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
afterEach(async () => {
  for (const s of scratches.splice(0)) await s.dispose();
});

/** An empty MariaDB database for the target, dropped after the test. */
async function targetDatabase(): Promise<ScratchState> {
  const s = await scratchState('mysql');
  scratches.push(s);
  return s;
}

/** A leader.yml in a fresh folder: its data_dir, `state:` as given, listening on a free port. */
async function leaderConfig(state: string, listenPort?: number): Promise<{ file: string; dataDir: string }> {
  const dir = await mkdtemp(join(root, 'leader-'));
  const dataDir = join(dir, 'data');
  const file = join(dir, 'leader.yml');
  await writeFile(file, `data_dir: ${dataDir}\nlisten: 127.0.0.1:${listenPort ?? (await freePort())}\n${state}${GITLAB}`);
  return { file, dataDir };
}

/** `state:` naming the test MariaDB's database `database`. */
function mysqlState(database: string): string {
  const password = MARIADB_ADMIN.password ? `, password: '${MARIADB_ADMIN.password}'` : '';
  return `state:\n  mysql: { host: ${MARIADB.host}, port: ${MARIADB.port}, user: ${MARIADB_ADMIN.user}${password}, database: ${database} }\n`;
}

/** The SQLite state a leader with `dataDir` left: two runs (one verified), a node, a dataset with a grant; epoch 6. */
async function oldLeaderState(dataDir: string): Promise<OpenState & { stores: StateStores }> {
  const opened = await openStateDatabase({ state: { engine: 'sqlite' }, dataDir });
  const stores = stateStores(plainScope(opened.state));
  for (const [i, id] of ['runbbbbbb1', 'runbbbbbb2'].entries()) {
    await stores.runs.claimDelivery(`delivery-${i}`, 'Push Hook', (runs) =>
      runs.createRun({
        id, projectId: 7, project: 'lab/scan', ref: 'refs/heads/secd', beforeSha: String(i).repeat(40),
        commit: String(i + 1).repeat(40), user: 'ada', userId: 42, deliveryKey: `delivery-${i}`, fetchUrl: 'http://gitlab/lab/scan.git',
      }),
    );
  }
  await stores.runs.transition('runbbbbbb1', 'verified', 'signatures good', { signer: 'ABCD' });
  await stores.nodes.issueToken('gpu-01');
  await stores.datasets.add({ name: 'icu', kind: 'mysql', mysqlDatabase: 'icu_2024' }, { release: 'review', approvals: 1 });
  await stores.datasets.grant({ username: 'ada', userId: 42 }, 'icu');
  await opened.state.db.updateTable('secd_lease').set({ epoch: 6 }).where('name', '=', LEADER_LEASE).execute();
  return { ...opened, stores };
}

/** Copy with `config`. */
function copy(config: string, from = 'sqlite', to = 'mysql') {
  return secd(['admin', 'state', 'copy', '--from', from, '--to', to, '--config', config]);
}

describe('secd admin state copy', () => {
  it("moves a stopped leader's runs, nodes and datasets into the MariaDB database leader.yml names, and says what to do next", async () => {
    const target = await targetDatabase();
    const { file, dataDir } = await leaderConfig(mysqlState(target.where));
    await (await oldLeaderState(dataDir)).close();

    const result = await copy(file);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toContain('warning');
    expect(result.stdout).toContain(`copying ${join(dataDir, 'secd.db')} into mysql://${MARIADB.host}:${MARIADB.port}/${target.where} (the leader must be stopped)`);
    expect(result.stdout).toMatch(/^TABLE +ROWS$/m);
    expect(result.stdout).toMatch(/^runs +2$/m);
    expect(result.stdout).toMatch(/^run_events +3$/m);
    expect(result.stdout).toMatch(/^deliveries +2$/m);
    expect(result.stdout).toMatch(/^nodes +1$/m);
    expect(result.stdout).toMatch(/^datasets +1$/m);
    expect(result.stdout).toMatch(/^dataset_grants +1$/m);
    expect(result.stdout).toMatch(/^run_releases +0$/m);
    expect(result.stdout).toContain('starts at epoch 6; the first leader to take the lease leads epoch 7');
    expect(result.stdout).toContain(`next: start the leaders with this config (systemctl start secd-leader on each machine that runs one); they all share mysql://${MARIADB.host}:${MARIADB.port}/${target.where}`);

    // The leaders' stores on MariaDB read what the old leader had.
    const copied = stateStores(plainScope(target.open()));
    expect((await copied.runs.list()).map((r) => [r.id, r.state]).sort()).toEqual([['runbbbbbb1', 'verified'], ['runbbbbbb2', 'received']]);
    expect((await copied.nodes.list()).map((n) => n.id)).toEqual(['gpu-01']);
    expect((await copied.datasets.list()).map((d) => d.name)).toEqual(['icu']);
    expect((await copied.datasets.grants()).map((g) => [g.user, g.dataset])).toEqual([['ada', 'icu']]);
    expect((await copied.runs.claimDelivery('delivery-1', 'Push Hook', async () => 'again')).first).toBe(false);

    // A second copy into the same database is refused with what it holds, and adds nothing.
    const again = await copy(file);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('the target state database is not empty (2 row(s) in runs');
    expect(again.stderr).toContain(`copy only into a new, empty database: nothing was copied into mysql://${MARIADB.host}:${MARIADB.port}/${target.where}`);
    expect(await copied.runs.list()).toHaveLength(2);
  });

  it('refuses a leader.yml that still says state: sqlite, saying to write the target into it first', async () => {
    const { file, dataDir } = await leaderConfig('state: sqlite\n');
    await (await oldLeaderState(dataDir)).close();
    const result = await copy(file);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${file} says state: sqlite, so there is nothing to copy into: write the target into it first (state: { mysql: { host, port, user, password_file, database } })`);
    expect(result.stdout).toBe('');
  });

  it('refuses when data_dir has no secd.db, naming the path, and creates none', async () => {
    const target = await targetDatabase();
    const { file, dataDir } = await leaderConfig(mysqlState(target.where));
    const result = await copy(file);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${join(dataDir, 'secd.db')} does not exist: there is no SQLite state to copy`);
    expect(existsSync(join(dataDir, 'secd.db'))).toBe(false);
  });

  it('refuses a database that does not exist on the server, naming it', async () => {
    const { file, dataDir } = await leaderConfig(mysqlState('secd_state_never_created'));
    await (await oldLeaderState(dataDir)).close();
    const result = await copy(file);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`could not open the state database mysql://${MARIADB.host}:${MARIADB.port}/secd_state_never_created`);
    expect(result.stderr).toContain(`(does the database exist, and may ${MARIADB_ADMIN.user} create tables in it?)`);
  });

  it('takes only --from sqlite and --to mysql', async () => {
    const target = await targetDatabase();
    const { file } = await leaderConfig(mysqlState(target.where));
    const from = await copy(file, 'mysql', 'mysql');
    expect(from.code).toBe(2);
    expect(from.stderr).toContain('--from must be sqlite (got "mysql")');
    const to = await copy(file, 'sqlite', 'postgres');
    expect(to.code).toBe(2);
    expect(to.stderr).toContain('--to must be mysql (got "postgres")');
  });

  it('refuses while a leader answers /healthz at listen, and copies nothing', async () => {
    const target = await targetDatabase();
    // A stand-in for the old leader still running on the config's listen address.
    const server = createServer((req, res) => {
      res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, role: 'active', epoch: 6 }));
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    try {
      const { file, dataDir } = await leaderConfig(mysqlState(target.where), port);
      await (await oldLeaderState(dataDir)).close();
      const result = await copy(file);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`a leader answers at http://127.0.0.1:${port}/healthz (role active, epoch 6): stop it first (systemctl stop secd-leader)`);
      const untouched = target.open();
      await migrateState(untouched);
      expect(await stateStores(plainScope(untouched)).runs.list()).toEqual([]);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('warns that a secd.db with a live WAL may be in use, and copies the snapshot it sees', async () => {
    const target = await targetDatabase();
    const { file, dataDir } = await leaderConfig(mysqlState(target.where));
    // A process still holding the file open, with its writes in the WAL.
    const live = await oldLeaderState(dataDir);
    try {
      const result = await copy(file);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toContain(`warning: ${join(dataDir, 'secd.db')}-wal is not empty`);
      expect(result.stderr).toContain('a leader may still be running on this file');
      expect(result.stderr).toContain('The copy is a snapshot of the file as it is now');
      expect(result.stdout).toMatch(/^runs +2$/m);
    } finally {
      await live.close();
    }
  });
});
