/**
 * A networked node as the leader holds it: the lifecycle's handle on it (a `NodeHandle`, like the
 * in-process node), fed by its connection. Assignments and cancels are kept here and re-sent until
 * the node answers (see node-registry.ts for the delivery rules).
 */
import { encodeMessage, type HelloMessage, type LeaderMessage, type StatusMessage } from '../contract/protocol.js';
import type { NodeHandle } from '../lifecycle/run-lifecycle.js';
import type { RunSpec } from '../contract/run-spec.js';
import type { NodeInventory, NodeView } from './node-view.js';

/** One open connection to a node, as the registry needs it. */
export interface NodeConnection {
  readonly remote: string;
  send(text: string): void;
  close(code: number, reason: string): void;
  terminate(): void;
}

/** The version of the inventory as the database keeps it (node-store's `inventory` column). */
export const INVENTORY_SCHEMA_VERSION = 1;

/** The inventory a hello announces. */
export function inventoryFromHello(hello: HelloMessage): NodeInventory {
  return {
    hostname: hello.hostname,
    gpus: hello.inventory.gpus.map((g) => ({ uuid: g.uuid, index: g.index, name: g.name, memoryTotalBytes: g.memory_total_bytes })),
    cpus: hello.inventory.cpus,
    memoryBytes: hello.inventory.memory_bytes,
    maxCpuRuns: hello.max_cpu_runs,
  };
}

/** The inventory the database kept, or null: a row written by another version is ignored. */
export function inventoryFromStore(raw: unknown): NodeInventory | null {
  if (!raw || typeof raw !== 'object') return null;
  const r = raw as { v?: unknown; inventory?: NodeInventory };
  return r.v === INVENTORY_SCHEMA_VERSION && r.inventory ? r.inventory : null;
}

/** A networked node: the lifecycle's handle on it, fed by its connection. */
export class RemoteNode implements NodeHandle {
  connection: NodeConnection | null = null;
  inventory: NodeInventory | null;
  status: StatusMessage | null = null;
  /** Epoch ms of the last frame received (or of the last hello persisted, after a restart). */
  lastSeenMs: number | null;
  /** Epoch ms since which the node has been down. */
  downSinceMs: number;
  draining: boolean;
  revoked: boolean;
  /** A hello was accepted on the current connection. */
  greeted = false;
  lastPersistedSeenMs = 0;
  /** The last view built, reused while nothing it was built from changed (the status page asks often). */
  cachedView: { view: NodeView; lastSeenMs: number | null; inventory: NodeInventory | null; status: StatusMessage | null } | null = null;
  /** Projects whose image the node said it holds. */
  imageProjects: string[] = [];
  readonly pendingAssign = new Map<string, { spec: RunSpec; sentMs: number }>();
  readonly pendingCancel = new Map<string, { reason: string; sentMs: number }>();

  constructor(
    readonly id: string,
    init: { inventory: NodeInventory | null; lastSeenMs: number | null; downSinceMs: number; draining: boolean; revoked: boolean },
    private readonly nowMs: () => number,
    private readonly timeoutMs: number,
  ) {
    this.inventory = init.inventory;
    this.lastSeenMs = init.lastSeenMs;
    this.downSinceMs = init.downSinceMs;
    this.draining = init.draining;
    this.revoked = init.revoked;
  }

  /** Up: connected, greeted, heard from within the timeout, not revoked. */
  isUp(nowMs = this.nowMs()): boolean {
    return (
      !this.revoked &&
      this.connection !== null &&
      this.greeted &&
      this.lastSeenMs !== null &&
      nowMs - this.lastSeenMs <= this.timeoutMs
    );
  }

  state(nowMs?: number): 'up' | 'down' | 'draining' {
    if (!this.isUp(nowMs)) return 'down';
    return this.draining ? 'draining' : 'up';
  }

  gpus(): string[] {
    return this.inventory?.gpus.map((g) => g.uuid) ?? [];
  }

  foreignBusyGpus(): string[] {
    return this.status?.gpus.filter((g) => g.foreign_busy).map((g) => g.uuid) ?? [];
  }

  cpuSlots(): number {
    return this.inventory?.maxCpuRuns ?? 0;
  }

  images(): string[] {
    return this.imageProjects;
  }

  assign(spec: RunSpec): void {
    const existing = this.pendingAssign.get(spec.runId);
    if (existing) return;
    const entry = { spec, sentMs: 0 };
    this.pendingAssign.set(spec.runId, entry);
    this.sendAssign(entry);
  }

  cancel(runId: string, reason: string): void {
    const entry = { reason, sentMs: 0 };
    this.pendingCancel.set(runId, entry);
    this.sendCancel(runId, entry);
  }

  /** Send a message if connected (greeted); false otherwise. */
  send(message: LeaderMessage): boolean {
    if (!this.connection || !this.greeted) return false;
    this.connection.send(encodeMessage(message));
    return true;
  }

  sendAssign(entry: { spec: RunSpec; sentMs: number }): void {
    if (this.send({ type: 'run.assign', spec: entry.spec })) entry.sentMs = this.nowMs();
  }

  sendCancel(runId: string, entry: { reason: string; sentMs: number }): void {
    if (this.send({ type: 'run.cancel', run_id: runId, reason: entry.reason })) entry.sentMs = this.nowMs();
  }
}
