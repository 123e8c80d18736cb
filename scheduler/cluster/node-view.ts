/**
 * What the API shows of a networked node, built from what the node said (its hello's inventory, its
 * last status) and whether it is up; the leader adds which runs hold which GPU (daemon/wiring).
 */
import type { GpuStatus, HostStatus, StatusMessage } from '../contract/protocol.js';

/** What a node told the leader about itself (hello), kept across reconnects and restarts. */
export interface NodeInventory {
  hostname: string;
  gpus: Array<{ uuid: string; index: number; name: string; memoryTotalBytes: number | null }>;
  cpus: number;
  memoryBytes: number;
  maxCpuRuns: number;
}

/** A node as the API shows it (before the leader adds which runs hold which GPU). */
export interface NodeView {
  id: string;
  hostname: string;
  state: 'up' | 'down' | 'draining';
  lastSeen: string | null;
  cpus: number;
  memoryBytes: number;
  load: number | null;
  memoryFreeBytes: number | null;
  gpus: Array<{
    uuid: string;
    index: number;
    name: string;
    memoryTotalBytes: number | null;
    memoryUsedBytes: number | null;
    utilizationPct: number | null;
    temperatureC: number | null;
    powerW: number | null;
    foreignBusy: boolean;
  }>;
}

/** What a view is built from. */
export interface NodeViewInput {
  id: string;
  state: NodeView['state'];
  lastSeenMs: number | null;
  inventory: NodeInventory | null;
  status: StatusMessage | null;
}

/** The view of one node: the status's samples laid over the inventory's GPUs. */
export function buildNodeView(n: NodeViewInput): NodeView {
  const samples = n.status?.gpus ?? [];
  const host: HostStatus | null = n.status?.host ?? null;
  return {
    id: n.id,
    hostname: n.inventory?.hostname ?? n.id,
    state: n.state,
    lastSeen: n.lastSeenMs === null ? null : new Date(n.lastSeenMs).toISOString(),
    cpus: host?.cpus ?? n.inventory?.cpus ?? 0,
    memoryBytes: host?.memory_total_bytes ?? n.inventory?.memoryBytes ?? 0,
    load: host?.load ?? null,
    memoryFreeBytes: host?.memory_free_bytes ?? null,
    gpus: (n.inventory?.gpus ?? []).map((g, i) => {
      // Samples come in inventory order; look further only when a node reports otherwise.
      const s: GpuStatus | undefined = samples[i]?.uuid === g.uuid ? samples[i] : samples.find((x) => x.uuid === g.uuid);
      return {
        uuid: g.uuid,
        index: g.index,
        name: g.name,
        memoryTotalBytes: s?.memory_total_bytes ?? g.memoryTotalBytes,
        memoryUsedBytes: s?.memory_used_bytes ?? null,
        utilizationPct: s?.utilization_pct ?? null,
        temperatureC: s?.temperature_c ?? null,
        powerW: s?.power_w ?? null,
        foreignBusy: s?.foreign_busy ?? false,
      };
    }),
  };
}
