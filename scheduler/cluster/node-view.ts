/**
 * What the leader knows of a node, in the node's own words: what its hello said about it (kept
 * across reconnects and restarts), its last status report, and whether it is up. Networked nodes
 * (remote-node.ts) and `secd up`'s in-process node (daemon/wiring/up.ts) are known the same way, so
 * one reading serves both: the planner's (which GPUs exist, which are foreign-busy; here) and the
 * API's (web/api-schema.ts `toApiNode`, the one place a node view becomes JSON).
 */
import type { HelloMessage, StatusMessage } from '../contract/protocol.js';
import type { PlannedGpu } from '../plan/plan-types.js';

/** What a node's hello said about the node itself (its held runs and images are the lifecycle's). */
export type NodeHello = Pick<HelloMessage, 'hostname' | 'inventory' | 'max_cpu_runs'>;

/** A node as the leader knows it, before the API adds which runs hold which GPU. */
export interface NodeView {
  id: string;
  state: 'up' | 'down' | 'draining';
  /** When the node was last heard from (ISO-8601), or null. */
  lastSeen: string | null;
  /** What its last hello said, or null before the first. */
  hello: NodeHello | null;
  /** Its last status report, or null since (re)connecting. */
  status: StatusMessage | null;
}

/** The hello's part about the node itself. */
export function nodeHelloOf(hello: NodeHello): NodeHello {
  return { hostname: hello.hostname, inventory: hello.inventory, max_cpu_runs: hello.max_cpu_runs };
}

/** UUIDs of every GPU the node announced, each MIG-mode GPU followed by its MIG devices (what runs are given). */
export function gpusOf(hello: NodeHello | null): string[] {
  return hello?.inventory.gpus.flatMap((g) => [g.uuid, ...(g.mig_mode ? (g.mig_devices ?? []).map((d) => d.uuid) : [])]) ?? [];
}

/** UUIDs of the GPUs the node's last status called foreign-busy (the node decides that: daemon/telemetry/node-report.ts). */
export function foreignBusyGpus(status: StatusMessage | null): string[] {
  return status?.gpus.filter((g) => g.foreign_busy).map((g) => g.uuid) ?? [];
}

/**
 * Whether a new status changes which GPUs are foreign-busy, lost or in error (what a node can take
 * changed, or a run's GPU was lost: plan again, which also stops such runs).
 */
export function foreignBusyChanged(before: StatusMessage | null, after: StatusMessage | null): boolean {
  const key = (s: StatusMessage | null) => `${foreignBusyGpus(s).join(',')}|${troubledGpus(s).map((t) => t.uuid).join(',')}`;
  return key(before) !== key(after);
}

/** GPUs the node's last status calls lost or in error (with what nvidia-smi said): given to nobody, and their runs stopped. */
export function troubledGpus(status: StatusMessage | null): Array<{ uuid: string; health: 'lost' | 'error'; problem: string }> {
  return (status?.gpus ?? []).flatMap((g) =>
    g.health === 'lost' || g.health === 'error' ? [{ uuid: g.uuid, health: g.health, problem: g.problem ?? `GPU ${g.health}` }] : [],
  );
}

/**
 * UUIDs the planner must not give out now: GPUs foreign-busy, lost or in error, and the MIG devices
 * of a GPU that is lost or in error (a slice does not outlive its GPU). A MIG-mode GPU's own
 * processes do not block its devices: they are the devices' processes, secd's among them.
 */
export function unavailableGpus(hello: NodeHello | null, status: StatusMessage | null): string[] {
  const troubled = new Set(troubledGpus(status).map((t) => t.uuid));
  const out = [...foreignBusyGpus(status).filter((u) => !isMigModeGpu(hello, u)), ...troubled];
  for (const g of hello?.inventory.gpus ?? []) if (troubled.has(g.uuid)) for (const d of g.mig_devices ?? []) out.push(d.uuid);
  return [...new Set(out)];
}

function isMigModeGpu(hello: NodeHello | null, uuid: string): boolean {
  return hello?.inventory.gpus.some((g) => g.uuid === uuid && g.mig_mode === true) ?? false;
}

/** What each GPU and MIG device of the node is, for the planner (scheduler/plan/gpu-eligibility.ts). */
export function plannerGpusOf(hello: NodeHello | null): PlannedGpu[] {
  return (hello?.inventory.gpus ?? []).flatMap((g): PlannedGpu[] => {
    const whole: PlannedGpu = { uuid: g.uuid, name: g.name, memoryBytes: g.memory_total_bytes, mig: null, ...(g.mig_mode ? { migMode: true } : {}) };
    if (!g.mig_mode) return [whole];
    return [whole, ...(g.mig_devices ?? []).map((d) => ({ uuid: d.uuid, name: g.name, memoryBytes: d.memory_total_bytes, mig: { profile: d.profile, gpu: g.uuid } }))];
  });
}
