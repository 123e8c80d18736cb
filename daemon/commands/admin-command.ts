/**
 * `secd admin ...`: operators' commands that work on the leader's database directly (SQLite in WAL
 * mode, so they run while the leader does; the leader picks changes up within a second).
 *
 * This file holds the `admin` command itself and the node subcommands. Other areas add theirs in
 * their own files, given the `admin` Command that registerAdminCommand returns (e.g.
 * `registerDatasetAdmin(admin)`), and open the database with `withLeaderDatabase`.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { nodeIdSchema } from '../../scheduler/contract/protocol.js';
import { openDatabase, type SqliteDatabase } from '../../storage/database.js';
import { NodeStore } from '../../storage/node-store.js';
import { ConfigError } from '../config/config-file.js';
import { loadLeaderConfig } from '../config/leader-config.js';
import { loadUpConfig } from '../config/up-config.js';

/** The `--config` option every admin subcommand takes. */
export const ADMIN_CONFIG_OPTION = ['--config <file>', 'leader.yml (or up.yml; default: secd up\'s embedded defaults under ./.secd)'] as const;

/**
 * The leader's data_dir from a leader.yml, or from an up.yml (a `secd up` machine issues tokens
 * too), or from `secd up`'s embedded defaults when no file is named.
 */
export function leaderDataDir(configFile: string | undefined): string {
  if (configFile === undefined) return loadUpConfig(null, process.cwd()).data_dir;
  try {
    return loadLeaderConfig(configFile).data_dir;
  } catch (leaderError) {
    if (!(leaderError instanceof ConfigError)) throw leaderError;
    try {
      return loadUpConfig(configFile, process.cwd()).data_dir;
    } catch {
      throw leaderError;
    }
  }
}

/** Open the leader's database for one admin command and close it afterwards. */
export async function withLeaderDatabase<T>(configFile: string | undefined, fn: (db: SqliteDatabase) => T | Promise<T>): Promise<T> {
  const db = openDatabase(join(leaderDataDir(configFile), 'secd.db'));
  try {
    return await fn(db);
  } finally {
    db.close();
  }
}

function checkNodeId(id: string): string {
  const parsed = nodeIdSchema.safeParse(id);
  if (!parsed.success) throw new AdminError(`"${id}" is not a node id: use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  return parsed.data;
}

/** A refusal to show the operator as one line (exit status 2). */
export class AdminError extends Error {}

/** Run an admin action, turning an AdminError into one line on stderr and exit status 2. */
export async function runAdmin(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    if (err instanceof AdminError) {
      process.stderr.write(`secd admin: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

/** Add `secd admin` with its node subcommands; returns the `admin` command for other areas' subcommands. */
export function registerAdminCommand(program: Command): Command {
  // Other areas may have created the group already (whichever registers first creates it).
  const admin =
    program.commands.find((c) => c.name() === 'admin') ??
    program.command('admin').description("operators' commands on the leader's database (nodes, datasets, grants)");

  admin
    .command('node-token')
    .description('issue a new token for a node (printed as the last line); its previous token stops working')
    .argument('<node id>', 'the node_id in that node\'s node.yml')
    .option(...ADMIN_CONFIG_OPTION)
    .action((id: string, options: { config?: string }) =>
      runAdmin(async () => {
        const nodeId = checkNodeId(id);
        const token = await withLeaderDatabase(options.config, (db) => new NodeStore(db).issueToken(nodeId));
        process.stdout.write(`secd admin: new token for node ${nodeId}; the leader keeps only its hash, so copy it now into that node's token: or token_file:\n`);
        process.stdout.write(`${token}\n`);
      }),
    );

  const node = admin.command('node').description('drain, undrain, revoke or list nodes');
  const flag = (name: string, description: string, apply: (store: NodeStore, id: string) => boolean, done: (id: string) => string) =>
    node
      .command(name)
      .description(description)
      .argument('<node id>')
      .option(...ADMIN_CONFIG_OPTION)
      .action((id: string, options: { config?: string }) =>
        runAdmin(async () => {
          const nodeId = checkNodeId(id);
          const changed = await withLeaderDatabase(options.config, (db) => apply(new NodeStore(db), nodeId));
          if (!changed) throw new AdminError(`no node ${nodeId} is known (issue it a token with "secd admin node-token ${nodeId}")`);
          process.stdout.write(`secd admin: ${done(nodeId)}\n`);
        }),
      );
  flag('drain', 'give the node no new runs; runs it has finish', (s, id) => s.setDraining(id, true), (id) => `node ${id} is draining: no new runs, running ones finish`);
  flag('undrain', 'give the node runs again', (s, id) => s.setDraining(id, false), (id) => `node ${id} takes runs again`);
  flag(
    'revoke',
    'refuse the node\'s token from now on (it is disconnected; its runs are lost after lost_after_ms)',
    (s, id) => s.revoke(id),
    (id) => `node ${id}'s token is revoked; issue a new one with "secd admin node-token ${id}"`,
  );
  node
    .command('list')
    .description('every node with its switches and when the leader last heard from it')
    .option(...ADMIN_CONFIG_OPTION)
    .action((options: { config?: string }) =>
      runAdmin(async () => {
        const rows = await withLeaderDatabase(options.config, (db) => new NodeStore(db).list());
        for (const r of rows) {
          const flags = [r.revoked ? 'revoked' : '', r.draining ? 'draining' : ''].filter(Boolean).join(',') || '-';
          process.stdout.write(`${r.id}\t${flags}\tlast seen ${r.lastSeen ?? 'never'}\thost ${r.hostname ?? '-'}\n`);
        }
      }),
    );
  return admin;
}
