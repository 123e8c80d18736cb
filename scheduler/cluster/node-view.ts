/**
 * What the leader knows of a node, in the node's own words: what its hello said about it (kept
 * across reconnects and restarts), its last status report, and whether it is up. Networked nodes
 * (remote-node.ts) and `secd up`'s in-process node (daemon/wiring/up.ts) are known the same way, so
 * one reading serves both: the planner's (which GPUs exist, which are foreign-busy; here) and the
 * API's (web/api-schema.ts `toApiNode`, the one place a node view becomes JSON).
 */
import type { HelloMessage, StatusMessage } from '../contract/protocol.js';

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

/** UUIDs of every GPU the node announced. */
export function gpusOf(hello: NodeHello | null): string[] {
  return hello?.inventory.gpus.map((g) => g.uuid) ?? [];
}

/** UUIDs of the GPUs the node's last status called foreign-busy (the node decides that: daemon/telemetry/node-report.ts). */
export function foreignBusyGpus(status: StatusMessage | null): string[] {
  return status?.gpus.filter((g) => g.foreign_busy).map((g) => g.uuid) ?? [];
}

/** Whether a new status changes which GPUs are foreign-busy (what a node can take changed: plan again). */
export function foreignBusyChanged(before: StatusMessage | null, after: StatusMessage | null): boolean {
  return foreignBusyGpus(before).join(',') !== foreignBusyGpus(after).join(',');
}
