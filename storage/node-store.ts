/**
 * Cluster nodes in SQLite: who may connect (a hash of each node's token), what an operator decided
 * (draining, revoked), and what the node last said about itself (so a restarted leader knows every
 * node's GPUs before the node reconnects).
 *
 * Tokens are 256 random bits, so a plain SHA-256 is enough to keep them out of the database: there is
 * nothing to brute-force. Issuing a token for a node replaces its previous one (rotation) and lifts
 * a revocation.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SqliteDatabase } from './database.js';

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

interface DbNode {
  id: string;
  token_hash: string;
  token_issued_at: string;
  revoked: number;
  draining: number;
  hostname: string | null;
  last_seen: string | null;
  inventory: string | null;
  created_at: string;
}

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
    revoked: r.revoked === 1,
    draining: r.draining === 1,
    hostname: r.hostname,
    lastSeen: r.last_seen,
    inventory,
    createdAt: r.created_at,
  };
}

/** Queries and the only writer of the `nodes` table. */
export class NodeStore {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** A fresh token for `id` (creating the node if new); only its hash is stored. */
  issueToken(id: string): string {
    const token = `${NODE_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const at = this.now().toISOString();
    this.db
      .prepare(
        `INSERT INTO nodes (id, token_hash, token_issued_at, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET token_hash = excluded.token_hash, token_issued_at = excluded.token_issued_at, revoked = 0`,
      )
      .run(id, hashToken(token).toString('hex'), at, at);
    return token;
  }

  /** Check the token a connecting node presents for the id it claims. */
  authenticate(id: string, token: string): NodeAuthResult {
    const r = this.db.prepare('SELECT * FROM nodes WHERE id = ?').get(id) as DbNode | undefined;
    if (!r) return { ok: false, code: 'unknown_node', reason: `no node ${id} is known: issue it a token with "secd admin node-token ${id}"` };
    const expected = Buffer.from(r.token_hash, 'hex');
    const given = hashToken(token);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      return { ok: false, code: 'bad_token', reason: `the token is not node ${id}'s current token` };
    }
    if (r.revoked === 1) return { ok: false, code: 'revoked', reason: `node ${id}'s token was revoked` };
    return { ok: true, node: toRow(r) };
  }

  /** One node, or undefined. */
  get(id: string): NodeRow | undefined {
    const r = this.db.prepare('SELECT * FROM nodes WHERE id = ?').get(id) as DbNode | undefined;
    return r ? toRow(r) : undefined;
  }

  /** Every node, by id. */
  list(): NodeRow[] {
    return (this.db.prepare('SELECT * FROM nodes ORDER BY id').all() as DbNode[]).map(toRow);
  }

  /** The operator's switches of every node: cheap enough to read every second. */
  flags(): Array<{ id: string; draining: boolean; revoked: boolean }> {
    const rows = this.db.prepare('SELECT id, draining, revoked FROM nodes').all() as Array<{ id: string; draining: number; revoked: number }>;
    return rows.map((r) => ({ id: r.id, draining: r.draining === 1, revoked: r.revoked === 1 }));
  }

  /** Stop (or resume) giving the node new runs; false when the node is unknown. */
  setDraining(id: string, draining: boolean): boolean {
    return this.db.prepare('UPDATE nodes SET draining = ? WHERE id = ?').run(draining ? 1 : 0, id).changes > 0;
  }

  /** Refuse the node's token from now on; false when the node is unknown. */
  revoke(id: string): boolean {
    return this.db.prepare('UPDATE nodes SET revoked = 1 WHERE id = ?').run(id).changes > 0;
  }

  /** What the node said in its hello. */
  recordHello(id: string, hostname: string, inventory: unknown): void {
    this.db
      .prepare('UPDATE nodes SET hostname = ?, inventory = ?, last_seen = ? WHERE id = ?')
      .run(hostname, JSON.stringify(inventory), this.now().toISOString(), id);
  }

  /** When the leader last heard from the node. */
  recordSeen(id: string, at: string): void {
    this.db.prepare('UPDATE nodes SET last_seen = ? WHERE id = ?').run(at, id);
  }
}
