/**
 * `secd admin state copy --from sqlite --to mysql --config leader.yml` (DESIGN §11): moves an
 * existing leader's state from its `<data_dir>/secd.db` into the empty MariaDB/MySQL database the
 * config's `state: { mysql: … }` names, so a site goes from one leader to several. The copy itself
 * is storage/sql/state-copy.ts (one target transaction, epoch carried, an occupied target refused);
 * this file is the operator's side of it.
 *
 * Choices made here:
 * - The target is read from the config the leaders will run with, not from flags: the operator
 *   writes the new `state:` into leader.yml first, so the database copied into is by construction
 *   the one the leaders then open. A config that still says `state: sqlite` (or an up.yml, whose
 *   state is always SQLite) is refused with what to write. `--from` and `--to` take only `sqlite`
 *   and `mysql`: they spell the direction out in the operator's shell history, and leave room for
 *   other directions without changing the command's shape.
 * - The source must already exist: opening a missing secd.db would create an empty one and "copy"
 *   nothing, which an operator who typed the wrong data_dir would not notice.
 * - A leader must be stopped. One answering `/healthz` at `listen` (https when `tls:` is set; the
 *   certificate is not checked: nothing secret is sent, we only ask whether a leader is there) is a
 *   refusal: its writes after the copy would be lost. A non-empty `secd.db-wal` (SQLite removes it
 *   when the last connection closes cleanly) is only a warning: a leader on another port, or one
 *   that crashed, leaves one too; the copy is then a snapshot of the file as it is now.
 * - Both states are migrated first, as a leader would (the copy needs one schema on both sides).
 * - Refusals (the config, the source, a running leader, an occupied or unreachable target) are
 *   AdminErrors: one line, exit status 2. A copy that fails inside its transaction exits 1 and says
 *   the target was left empty.
 */
import { existsSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Command } from 'commander';
import { errorText } from '../../scheduler/common/errors.js';
import { COPIED_TABLES, copyState, TargetNotEmpty, type StateCopyOutcome } from '../../storage/sql/state-copy.js';
import type { StateConfig } from '../config/state-config.js';
import { openStateDatabase, type OpenState } from '../wiring/leader-state.js';
import { AdminError, adminGroup, loadAdminConfig, runAdmin, type AdminConfig } from './admin-command.js';
import { table } from './admin-table.js';

const NAME = 'secd admin state copy';

/** What `secd admin state copy --help` adds after the options: the procedure, in order. */
export const STATE_COPY_HELP = `
Moves a leader's state from <data_dir>/secd.db into the empty MariaDB/MySQL database that the
config's state: names, in one transaction (a copy that fails leaves the database empty):
  1. create the database (secd creates its tables, not the database) and its account;
  2. write the target into leader.yml:  state: { mysql: { host, port, user, password_file, database } }
  3. stop the leader (systemctl stop secd-leader): writes made after the copy would be lost;
  4. secd admin state copy --from sqlite --to mysql --config /etc/secd/leader.yml
  5. start the leaders with this config (systemctl start secd-leader on each machine).
secd.db is only read (and migrated); keep it until the new leaders run well.`;

/** Add `secd admin state copy` to the program. */
export function registerStateCopyCommand(program: Command): void {
  const state = adminGroup(program).command('state').description("move the leader's state from SQLite to MariaDB/MySQL (for several leaders)");
  // Not adminAction's --config: this one has no default (secd up's embedded config is always SQLite).
  state
    .command('copy')
    .description("copy a stopped leader's SQLite state (<data_dir>/secd.db) into the empty MySQL database its config's state: names")
    .requiredOption('--from <engine>', 'where the state is now: sqlite (<data_dir>/secd.db)')
    .requiredOption('--to <engine>', "where it goes: mysql (the config's state: { mysql: … })")
    .requiredOption('--config <file>', 'the leader.yml the leaders will run with, its state: naming the target database')
    .addHelpText('after', STATE_COPY_HELP)
    .action((options: { from: string; to: string; config: string }) => runAdmin(() => copyCommand(options)));
}

async function copyCommand(options: { from: string; to: string; config: string }): Promise<void> {
  if (options.from !== 'sqlite') throw new AdminError(`--from must be sqlite (got "${options.from}"): a state is copied from a leader's secd.db`);
  if (options.to !== 'mysql') throw new AdminError(`--to must be mysql (got "${options.to}"): a state is copied into a MariaDB/MySQL database`);
  const config = loadAdminConfig(options.config);
  const target = mysqlTarget(config, options.config);
  const source = join(config.data_dir, 'secd.db');
  if (!existsSync(source)) {
    throw new AdminError(`${source} does not exist: there is no SQLite state to copy (is data_dir the old leader's? a leader that never started has none)`);
  }
  const live = await answeringLeader(config);
  if (live) {
    throw new AdminError(
      `a leader answers at ${live.url} (role ${live.role}, epoch ${live.epoch}): stop it first (systemctl stop secd-leader); what it writes to ${source} after the copy would be lost`,
    );
  }
  const wal = statSync(`${source}-wal`, { throwIfNoEntry: false });
  if (wal && wal.size > 0) {
    process.stderr.write(
      `${NAME}: warning: ${source}-wal is not empty (${wal.size} bytes): a leader may still be running on this file (or one stopped without closing it). The copy is a snapshot of the file as it is now; anything written after it is not copied. Stop every leader on it first.\n`,
    );
  }
  process.stdout.write(`${NAME}: copying ${source} into mysql://${target.host}:${target.port}/${target.database} (the leader must be stopped)\n`);

  const from = await openStateDatabase({ state: { engine: 'sqlite' }, dataDir: config.data_dir });
  let outcome: StateCopyOutcome;
  let where: string;
  try {
    let to: OpenState;
    try {
      to = await openStateDatabase({ state: target, dataDir: config.data_dir });
    } catch (err) {
      throw new AdminError(`${errorText(err)} (does the database exist, and may ${target.user} create tables in it?)`);
    }
    where = to.where;
    try {
      outcome = await copyState(from.state, to.state);
    } catch (err) {
      if (err instanceof TargetNotEmpty) throw new AdminError(`${err.message}: nothing was copied into ${to.where}`);
      process.stderr.write(`${NAME}: the copy failed and ${to.where} was left as empty as it was: ${errorText(err)}\n`);
      process.exitCode = 1;
      return;
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
  process.stdout.write(`${copiedTable(outcome)}\n`);
  process.stdout.write(
    `${NAME}: the state in ${where} starts at epoch ${outcome.epoch}; the first leader to take the lease leads epoch ${outcome.epoch + 1}, so nodes that knew the old leader accept it\n`,
  );
  process.stdout.write(
    `next: start the leaders with this config (systemctl start secd-leader on each machine that runs one); they all share ${where}. No leader reads ${source} any more: keep it until they run well.\n`,
  );
}

/** Each copied table with its rows, in the order they were copied. */
function copiedTable(outcome: StateCopyOutcome): string {
  return table(['TABLE', 'ROWS'], COPIED_TABLES.map((t) => [t, String(outcome.rows[t])]));
}

/** The config's `state: { mysql }`, or a refusal saying what to put there. */
function mysqlTarget(config: AdminConfig, file: string): Extract<StateConfig, { engine: 'mysql' }> {
  const write = 'write the target into it first (state: { mysql: { host, port, user, password_file, database } }), then stop the leader and run this again';
  if (!('state' in config)) throw new AdminError(`${file} is an up.yml, whose state is always SQLite: name the leader.yml the leaders will run with`);
  if (config.state.engine !== 'mysql') throw new AdminError(`${file} says state: sqlite, so there is nothing to copy into: ${write}`);
  return config.state;
}

/** A leader that answers /healthz at the config's `listen`, or null when none does (within 1.5 s). */
async function answeringLeader(config: AdminConfig): Promise<{ url: string; role: string; epoch: number } | null> {
  // A leader listening on every address is reached on this machine's loopback.
  const host = config.listen.host === '0.0.0.0' ? '127.0.0.1' : config.listen.host === '::' ? '::1' : config.listen.host;
  const tls = config.tls !== undefined;
  const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${config.listen.port}/healthz`;
  const body = await new Promise<string | null>((done) => {
    const req = (tls ? httpsRequest : httpRequest)(
      { host, port: config.listen.port, path: '/healthz', method: 'GET', timeout: 1500, ...(tls ? { rejectUnauthorized: false } : {}) },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => done(text));
        res.on('error', () => done(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(null));
    req.end();
  });
  if (body === null) return null;
  try {
    const parsed = JSON.parse(body) as { role?: unknown; epoch?: unknown };
    // Something else on that port (not a leader's answer) does not hold secd.db.
    if (typeof parsed.role !== 'string') return null;
    return { url, role: parsed.role, epoch: Number(parsed.epoch ?? 0) };
  } catch {
    return null;
  }
}
