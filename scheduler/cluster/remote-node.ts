/**
 * A networked node as the leader holds it: the lifecycle's handle on it (a `NodeHandle`, like the
 * in-process node), fed by its connection. Assignments and cancels are kept here and re-sent until
 * the node answers (see node-registry.ts for the delivery rules).
 */
import { z } from 'zod';
import { encodeMessage, helloMessage, type LeaderMessage, type StatusMessage } from '../contract/protocol.js';

/** Each kind of leader -> node message without its epoch (distributed over the union). */
type Unstamped<M> = M extends LeaderMessage ? Omit<M, 'epoch'> : never;
/** A leader -> node message before its epoch is stamped (RemoteNode.send stamps it). */
export type LeaderMessageBody = Unstamped<LeaderMessage>;
import type { NodeHandle } from '../lifecycle/run-lifecycle.js';
import type { RunSpec } from '../contract/run-spec.js';
import type { PlannedGpu } from '../plan/plan-types.js';
import { gpusOf, plannerGpusOf, troubledGpus, unavailableGpus, type NodeHello } from './node-view.js';

/** One open connection to a node, as the registry needs it. */
export interface NodeConnection {
  readonly remote: string;
  send(text: string): void;
  close(code: number, reason: string): void;
  terminate(): void;
}

/** The version of what the database keeps of a hello (node-store's `inventory` column). */
export const INVENTORY_SCHEMA_VERSION = 2;

const storedHello = z.union([
  z.object({ v: z.literal(2), hello: helloMessage.pick({ hostname: true, inventory: true, max_cpu_runs: true }) }),
  // Version 1 kept the same facts in camelCase: a leader upgraded in place still knows its nodes.
  z
    .object({
      v: z.literal(1),
      inventory: z.object({
        hostname: z.string(),
        gpus: z.array(z.object({ uuid: z.string(), index: z.number(), name: z.string(), memoryTotalBytes: z.number().nullable() })),
        cpus: z.number(),
        memoryBytes: z.number(),
        maxCpuRuns: z.number(),
      }),
    })
    .transform(({ inventory: i }) => ({
      hello: {
        hostname: i.hostname,
        inventory: {
          gpus: i.gpus.map((g) => ({ uuid: g.uuid, index: g.index, name: g.name, memory_total_bytes: g.memoryTotalBytes })),
          cpus: i.cpus,
          memory_bytes: i.memoryBytes,
        },
        max_cpu_runs: i.maxCpuRuns,
      },
    })),
]);

/** What the database keeps of a hello. */
export function storedHelloOf(hello: NodeHello): unknown {
  return { v: INVENTORY_SCHEMA_VERSION, hello };
}

/** The hello the database kept, or null: a row this version cannot read is ignored until the node says hello. */
export function helloFromStore(raw: unknown): NodeHello | null {
  const parsed = storedHello.safeParse(raw);
  return parsed.success ? parsed.data.hello : null;
}

/** A networked node: the lifecycle's handle on it, fed by its connection. */
export class RemoteNode implements NodeHandle {
  connection: NodeConnection | null = null;
  /** What its last hello said about the node (from the database until it says hello again). */
  hello: NodeHello | null;
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
  /** Projects whose image the node said it holds. */
  imageProjects: string[] = [];
  readonly pendingAssign = new Map<string, { spec: RunSpec; sentMs: number }>();
  readonly pendingCancel = new Map<string, { reason: string; sentMs: number }>();

  constructor(
    readonly id: string,
    init: { hello: NodeHello | null; lastSeenMs: number | null; downSinceMs: number; draining: boolean; revoked: boolean },
    private readonly nowMs: () => number,
    private readonly timeoutMs: number,
    /** The epoch this leader leads, stamped on every message (DESIGN §11); null: none. */
    private readonly epoch: () => number | null = () => null,
  ) {
    this.hello = init.hello;
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
    return gpusOf(this.hello);
  }

  // Foreign-busy, lost or in error: the planner and the plan check give none of these out.
  foreignBusyGpus(): string[] {
    return unavailableGpus(this.hello, this.status);
  }

  /** What each GPU and MIG device is (model, memory, MIG profile), for requests by model, memory or profile. */
  gpuDetails(): PlannedGpu[] {
    return plannerGpusOf(this.hello);
  }

  /** GPUs the node reports lost or in error, with what nvidia-smi said (runs on them are stopped). */
  gpuTroubles(): Array<{ uuid: string; health: 'lost' | 'error'; problem: string }> {
    return troubledGpus(this.status);
  }

  cpuSlots(): number {
    return this.hello?.max_cpu_runs ?? 0;
  }

  /** The node's own sentence while its disk is under its watermark (from its last status), else null. */
  diskLow(): string | null {
    return this.status?.disk_low ?? null;
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
  send(message: LeaderMessageBody): boolean {
    if (!this.connection || !this.greeted) return false;
    this.connection.send(encodeMessage(stampEpoch(message, this.epoch())));
    return true;
  }

  sendAssign(entry: { spec: RunSpec; sentMs: number }): void {
    if (this.send({ type: 'run.assign', spec: entry.spec })) entry.sentMs = this.nowMs();
  }

  sendCancel(runId: string, entry: { reason: string; sentMs: number }): void {
    if (this.send({ type: 'run.cancel', run_id: runId, reason: entry.reason })) entry.sentMs = this.nowMs();
  }
}

/**
 * `message` with the leader's epoch (DESIGN §11: a node refuses one older than the newest it saw).
 * A leader with no epoch (one built without a role, in tests; or one that just lost its lease)
 * sends 0, which a node that has seen any leader's epoch refuses.
 */
export function stampEpoch<M extends Omit<LeaderMessage, 'epoch'>>(message: M, epoch: number | null): M & { epoch: number } {
  return { ...message, epoch: epoch ?? 0 };
}
