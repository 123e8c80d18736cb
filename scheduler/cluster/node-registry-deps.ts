/**
 * What the node registry (node-registry.ts) is given and whom it reports to, and the close codes it
 * ends connections with: the registry's faces, apart from its workings.
 */
import type { NodeStore } from '../../storage/node-store.js';
import type { Log } from '../common/log.js';
import type { HeldRun, StatusMessage } from '../contract/protocol.js';
import type { RunOutcome, RunPhase } from '../contract/run-spec.js';

/**
 * Where the registry reports what nodes say about their runs (the lifecycle). A report may be async:
 * the next report of the same node waits for it, and a result is acknowledged after it resolved.
 */
export interface NodeRunReports {
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void | Promise<unknown>;
  /**
   * Resolves once the result is recorded; a rejection or `false` (the write failed): not
   * acknowledged, the node sends it again.
   */
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void | Promise<unknown>;
  /** A node (re)connected and listed the runs it holds. */
  onNodeHello(nodeId: string, held: ReadonlyArray<{ runId: string; phase: HeldRun['phase'] }>): void | Promise<unknown>;
  /** What a node can take changed (undrained, a GPU freed by a foreign process...): plan again. */
  scheduleSoon(): void;
}

/** What the registry is given by main. */
export interface NodeRegistryDeps {
  store: NodeStore;
  log: Log;
  now(): Date;
  /** A node silent this long is down. */
  nodeTimeoutMs: number;
  /** How long an unanswered assign or cancel waits before it is sent again. */
  resendMs?: number;
  /** How often `last_seen` is written to the database per node (it is exact in memory). */
  persistSeenMs?: number;
  /** The epoch this leader leads (DESIGN §11), stamped on every message to a node; null or absent: none. */
  epoch?(): number | null;
  /** Called with every status a node reports (the status page's live feed). */
  onStatus?(nodeId: string, status: StatusMessage): void;
}

/** Close codes the leader uses; the node treats 4401 and 4409 as "stop and tell the operator". */
export const CLOSE_CODES = {
  /** Token revoked while connected. */
  revoked: 4401,
  /** The node id is taken (the in-process node) or the hello names another node. */
  conflict: 4409,
  /** Protocol version or a hello that does not parse. */
  badHello: 4400,
  /** Silent longer than node_timeout_ms. */
  silent: 4408,
  /** A newer connection of the same node replaced this one. */
  replaced: 4000,
} as const;
