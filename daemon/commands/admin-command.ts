/**
 * `secd admin ...`: operators' commands that work on the leader's database directly (SQLite in WAL
 * mode, so they run while the leader does; the leader picks changes up within a second).
 *
 * This file holds the `admin` command itself, what every admin subcommand shares (the config it
 * reads, the database's stores, `--config` and the one-line refusals) and the node subcommands.
 * An admin command opens the state as the leader does (storage/state-stores.ts over a plain,
 * unfenced scope, migrated first) and closes both handles when it is done. Other areas
 * add theirs in their own files to `adminGroup(program)`, finishing each with `adminAction`.
 */
import type { Command } from 'commander';
import { nodeIdSchema } from '../../scheduler/contract/protocol.js';
import type { NodeRow, NodeStore } from '../../storage/node-store.js';
import { plainScope } from '../../storage/sql/state-scope.js';
import { openStateDatabase } from '../wiring/leader-state.js';
import { stateStores, type StateStores } from '../../storage/state-stores.js';
import { table } from './admin-table.js';
import { ConfigError } from '../config/config-file.js';
import { loadLeaderConfig, type LeaderConfig } from '../config/leader-config.js';
import { loadUpConfig, type UpConfig } from '../config/up-config.js';

/** The `--config` option every admin subcommand takes. */
export const ADMIN_CONFIG_OPTION = ['--config <file>', 'leader.yml (or up.yml; default: secd up\'s embedded defaults under ./.secd)'] as const;

/** The config an admin command reads: a leader.yml, or an up.yml (with its `node:` section). */
export type AdminConfig = LeaderConfig | UpConfig;

/**
 * The leader's config from a leader.yml, or from an up.yml (a `secd up` machine issues tokens
 * too), or `secd up`'s embedded defaults when no file is named. A file that is neither reports
 * what is wrong with it as a leader.yml.
 */
export function loadAdminConfig(configFile: string | undefined): AdminConfig {
  if (configFile === undefined) return loadUpConfig(null, process.cwd());
  try {
    return loadLeaderConfig(configFile);
  } catch (leaderError) {
    if (!(leaderError instanceof ConfigError)) throw leaderError;
    try {
      return loadUpConfig(configFile, process.cwd());
    } catch {
      throw leaderError;
    }
  }
}

/**
 * Open the state of the leader `config` configures (SQLite or MySQL, migrated as the leader would),
 * run `fn` on its stores and close everything afterwards, whether `fn` succeeded or not. An
 * operator's change is written as any leader's intake is: not fenced, so it lands whichever leader
 * is active.
 */
export async function withStores<T>(config: AdminConfig, fn: (stores: StateStores) => Promise<T>): Promise<T> {
  const opened = await openStateDatabase({ state: 'state' in config ? config.state : { engine: 'sqlite' }, dataDir: config.data_dir });
  try {
    return await fn(stateStores(plainScope(opened.state)));
  } finally {
    await opened.close();
  }
}

/** Open the state of the leader `configFile` configures; see withStores. */
export async function withLeaderStores<T>(configFile: string | undefined, fn: (stores: StateStores) => Promise<T>): Promise<T> {
  return withStores(loadAdminConfig(configFile), fn);
}

function checkNodeId(id: string): string {
  const parsed = nodeIdSchema.safeParse(id);
  if (!parsed.success) throw new AdminError(`"${id}" is not a node id: use 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  return parsed.data;
}

/** A refusal to show the operator as one line (exit status 2). */
export class AdminError extends Error {}

/** The `secd admin` group: whichever area registers first creates it, the others add to it. */
export function adminGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'admin') ??
    program.command('admin').description("operators' commands on the leader's database (nodes, datasets, grants, output release)")
  );
}

/**
 * Finish an admin subcommand: add `--config` (after its own options) and run `action` with its
 * arguments and options through runAdmin.
 */
export function adminAction<A extends unknown[]>(command: Command, action: (...args: A) => Promise<void>): Command {
  return command.option(...ADMIN_CONFIG_OPTION).action((...args: unknown[]) => runAdmin(() => action(...(args as A))));
}

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

/**
 * Add `secd admin` with its node subcommands and the output-release audit (release-admin-command.ts);
 * returns the `admin` command for other areas' subcommands.
 */
export function registerAdminCommand(program: Command): Command {
  const admin = adminGroup(program);

  adminAction(
    admin
      .command('node-token')
      .description('issue a new token for a node (printed as the last line); its previous token stops working')
      .argument('<node id>', 'the node_id in that node\'s node.yml'),
    async (id: string, options: { config?: string }) => {
      const nodeId = checkNodeId(id);
      const token = await withLeaderStores(options.config, (s) => s.nodes.issueToken(nodeId));
      // Where the token goes, as docs/sysadmin.md section 4 says: the node unit's credential file.
      process.stdout.write(
        `secd admin: new token for node ${nodeId} (its previous token no longer works). The leader keeps only a hash, so copy the last line now into /etc/secd/credentials/token on ${nodeId} (without systemd: the file node.yml's token_file names) and restart it: systemctl restart secd-node\n`,
      );
      process.stdout.write(`${token}\n`);
    },
  );

  const node = admin.command('node').description('drain, undrain, revoke or list nodes');
  const flag = (name: string, description: string, apply: (store: NodeStore, id: string) => Promise<boolean>, done: (id: string) => string) =>
    adminAction(node.command(name).description(description).argument('<node id>'), async (id: string, options: { config?: string }) => {
      const nodeId = checkNodeId(id);
      const changed = await withLeaderStores(options.config, (s) => apply(s.nodes, nodeId));
      if (!changed) throw new AdminError(`no node ${nodeId} is known (issue it a token with "secd admin node-token ${nodeId}")`);
      process.stdout.write(`secd admin: ${done(nodeId)}\n`);
    });
  flag('drain', 'give the node no new runs; runs it has finish', (s, id) => s.setDraining(id, true), (id) => `node ${id} is draining: no new runs, running ones finish`);
  flag('undrain', 'give the node runs again', (s, id) => s.setDraining(id, false), (id) => `node ${id} takes runs again`);
  flag(
    'revoke',
    'refuse the node\'s token from now on (it is disconnected; its runs are lost after lost_after_ms)',
    (s, id) => s.revoke(id),
    (id) => `node ${id}'s token is revoked; issue a new one with "secd admin node-token ${id}"`,
  );
  adminAction(
    node.command('list').description('every node with its switches and when the leader last heard from it'),
    async (options: { config?: string }) => {
      const config = loadAdminConfig(options.config);
      const rows = await withStores(config, (s) => s.nodes.list());
      const live = await liveNodes(config);
      process.stdout.write(`${nodeTable(rows, live, new Date())}\n`);
      if (!live.ok) process.stdout.write(`(${live.why}: LAST SEEN is each node's last hello or disconnect as the database has it)\n`);
    },
  );
  return admin;
}

/** What the running leader says of its nodes (GET /api/v1/nodes), or why it could not be asked. */
type LiveNodes = { ok: true; nodes: Map<string, { state: string; lastSeen: string | null }> } | { ok: false; why: string };

// The database's last_seen is written at a node's hello and disconnect only: a connected node's
// true "last seen" (seconds ago) is in the running leader's memory, so ask it first.
async function liveNodes(config: AdminConfig): Promise<LiveNodes> {
  const url = `${config.public_url.replace(/\/+$/, '')}/api/v1/nodes`;
  try {
    const token = config.api.read_token;
    const res = await fetch(url, { signal: AbortSignal.timeout(2000), headers: token ? { authorization: `Bearer ${token}` } : {} });
    if (!res.ok) return { ok: false, why: `the leader at ${url} answered ${res.status}` };
    const body = (await res.json()) as { nodes?: Array<{ id?: unknown; state?: unknown; last_seen?: unknown }> };
    const nodes = new Map<string, { state: string; lastSeen: string | null }>();
    for (const n of body.nodes ?? []) {
      if (typeof n.id === 'string') nodes.set(n.id, { state: String(n.state ?? '-'), lastSeen: typeof n.last_seen === 'string' ? n.last_seen : null });
    }
    return { ok: true, nodes };
  } catch (err) {
    return { ok: false, why: `the leader at ${url} did not answer (${err instanceof Error ? err.message : String(err)})` };
  }
}

/** The node list as a table: the leader's live view where it has one, the database's otherwise. */
export function nodeTable(rows: readonly NodeRow[], live: LiveNodes, now: Date): string {
  const body = rows.map((r) => {
    const seen = live.ok ? live.nodes.get(r.id) : undefined;
    const state = !live.ok ? '?' : seen ? seen.state : 'not connected';
    const switches = [r.revoked ? 'revoked' : '', r.draining ? 'draining' : ''].filter(Boolean).join(',') || '-';
    return [r.id, state, switches, ago(seen?.lastSeen ?? r.lastSeen, now), r.hostname ?? '-'];
  });
  return table(['NODE', 'STATE', 'SWITCHES', 'LAST SEEN', 'HOST'], body);
}

function ago(at: string | null, now: Date): string {
  if (!at) return 'never';
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(at)) / 1000));
  const rel = s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : s < 172_800 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86_400)} d ago`;
  return `${at.replace(/\.\d{3}Z$/, 'Z')} (${rel})`;
}
