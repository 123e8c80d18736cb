/**
 * Cluster nodes in the leader's state (SQLite or MySQL, one Kysely text for both): who may connect
 * (a hash of each node's token), what an operator decided (draining, revoked), and what the node
 * last said about itself (so a restarted leader knows every node's GPUs before the node reconnects).
 *
 * Tokens are 256 random bits, so a plain SHA-256 is enough to keep them out of the database: there is
 * nothing to brute-force. Issuing a token for a node replaces its previous one (rotation) and lifts
 * a revocation.
 *
 * Every write goes through `scope.write`, even a single statement: on the active leader of several
 * that is what carries its epoch (state-scope.ts), so a leader that lost its lease changes nothing.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { NodesTable } from './sql/cluster-tables.js';
import type { StateScope } from './sql/state-scope.js';

/** A node as stored. */
export interface NodeRow {
  id: string;
  tokenIssuedAt: string;
  revoked: boolean;
  draining: boolean;
  hostname: string | null;
  lastSeen: string | null;
  /** The last hello's inventory as the node sent it (JSON), or null before the first hello. */
  inventory: unknown;
  createdAt: string;
}

/** Why a node was refused. */
export type NodeAuthFailure = { ok: false; code: 'unknown_node' | 'bad_token' | 'revoked'; reason: string };

/** Outcome of checking a node's token. */
export type NodeAuthResult = { ok: true; node: NodeRow } | NodeAuthFailure;

type DbNode = Selectable<NodesTable>;

/** Prefix of every node token, so a leaked one is recognisable in logs and secret scanners. */
export const NODE_TOKEN_PREFIX = 'secdn_';

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function toRow(r: DbNode): NodeRow {
  let inventory: unknown = null;
  if (r.inventory !== null) {
    try {
      inventory = JSON.parse(r.inventory);
    } catch {
      inventory = null;
    }
  }
  return {
    id: r.id,
    tokenIssuedAt: r.token_issued_at,
    revoked: Number(r.revoked) === 1,
    draining: Number(r.draining) === 1,
    hostname: r.hostname,
    lastSeen: r.last_seen,
    inventory,
    createdAt: r.created_at,
  };
}

/** Queries and the only writer of the `nodes` table. */
export class NodeStore {
  constructor(
    private readonly scope: StateScope,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A fresh token for `id` (creating the node if new); only its hash is stored. */
  async issueToken(id: string): Promise<string> {
    const token = `${NODE_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const at = this.now().toISOString();
    const tokenHash = hashToken(token).toString('hex');
    const replaced = { token_hash: tokenHash, token_issued_at: at, revoked: 0 };
    await this.scope.write(async (trx) => {
      const insert = trx.db.insertInto('nodes').values({ id, token_hash: tokenHash, token_issued_at: at, created_at: at });
      await (trx.engine === 'mysql'
        ? insert.onDuplicateKeyUpdate(replaced)
        : insert.onConflict((oc) => oc.column('id').doUpdateSet(replaced))
      ).execute();
    });
    return token;
  }

  /** Check the token a connecting node presents for the id it claims. */
  async authenticate(id: string, token: string): Promise<NodeAuthResult> {
    const r = await this.row(id);
    if (!r) return { ok: false, code: 'unknown_node', reason: `no node ${id} is known: issue it a token with "secd admin node-token ${id}"` };
    const expected = Buffer.from(r.token_hash, 'hex');
    const given = hashToken(token);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      return { ok: false, code: 'bad_token', reason: `the token is not node ${id}'s current token` };
    }
    if (Number(r.revoked) === 1) return { ok: false, code: 'revoked', reason: `node ${id}'s token was revoked` };
    return { ok: true, node: toRow(r) };
  }

  /** One node, or undefined. */
  async get(id: string): Promise<NodeRow | undefined> {
    const r = await this.row(id);
    return r ? toRow(r) : undefined;
  }

  /** Every node, by id. */
  async list(): Promise<NodeRow[]> {
    const rows = await this.scope.db.selectFrom('nodes').selectAll().orderBy('id').execute();
    return rows.map(toRow);
  }

  /** The operator's switches of every node: cheap enough to read every second. */
  async flags(): Promise<Array<{ id: string; draining: boolean; revoked: boolean }>> {
    const rows = await this.scope.db.selectFrom('nodes').select(['id', 'draining', 'revoked']).execute();
    return rows.map((r) => ({ id: r.id, draining: Number(r.draining) === 1, revoked: Number(r.revoked) === 1 }));
  }

  /** Stop (or resume) giving the node new runs; false when the node is unknown. */
  async setDraining(id: string, draining: boolean): Promise<boolean> {
    return this.updated(id, { draining: draining ? 1 : 0 });
  }

  /** Refuse the node's token from now on; false when the node is unknown. */
  async revoke(id: string): Promise<boolean> {
    return this.updated(id, { revoked: 1 });
  }

  /** What the node said in its hello. */
  async recordHello(id: string, hostname: string, inventory: unknown): Promise<void> {
    await this.updated(id, { hostname, inventory: JSON.stringify(inventory), last_seen: this.now().toISOString() });
  }

  /** When the leader last heard from the node. */
  async recordSeen(id: string, at: string): Promise<void> {
    await this.updated(id, { last_seen: at });
  }

  private row(id: string): Promise<DbNode | undefined> {
    return this.scope.db.selectFrom('nodes').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /**
   * Set `values` on node `id`; false when there is no such node. Rows matched, not rows changed:
   * mysql2 asks the server for found rows, so setting a value the row already has still counts.
   */
  private async updated(id: string, values: Partial<Omit<DbNode, 'id'>>): Promise<boolean> {
    const result = await this.scope.write((trx) => trx.db.updateTable('nodes').set(values).where('id', '=', id).executeTakeFirst());
    return Number(result.numUpdatedRows) > 0;
  }
}
