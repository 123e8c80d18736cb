/**
 * What the node reports of its GPUs between two looks, pure: MIG devices named from `nvidia-smi -L`,
 * GPUs gone from a later report kept as `lost`, and a failing nvidia-smi's last good inventory kept
 * as stale rather than reported as zero GPUs (issue: a GPU fallen off the bus made nvidia-smi exit
 * non-zero and the whole machine, healthy GPUs included, vanish from the planner).
 */
import type { InventoryGpu } from '../../scheduler/contract/protocol.js';
import { sameBusId, troublesIn, type GpuReading } from './gpu-reading.js';
import type { ListedMigDevice } from './nvidia-smi-list.js';

/** Readings with their MIG devices' UUIDs and profiles from `-L` (joined on the GPU UUID and the device index); a device `-L` does not name is dropped: without a UUID it cannot be given. */
export function withMigDevices(readings: readonly GpuReading[], listed: ReadonlyMap<string, ListedMigDevice[]>): GpuReading[] {
  return readings.map((g) => {
    if (g.mig_mode !== true) return g.mig_devices.length === 0 ? g : { ...g, mig_devices: [] };
    const names = listed.get(g.uuid) ?? [];
    const fromXml = new Map(g.mig_devices.map((d) => [d.index, d]));
    const mig_devices = names.map((n) => ({ uuid: n.uuid, index: n.index, profile: n.profile, memory_total_bytes: fromXml.get(n.index)?.memory_total_bytes ?? null }));
    return { ...g, mig_devices };
  });
}

/** A reading that says nothing but that the GPU is there and in trouble. */
function unreadable(g: GpuReading, health: 'lost' | 'error', problem: string): GpuReading {
  return {
    ...g,
    utilization_pct: null,
    memory_used_bytes: null,
    temperature_c: null,
    power_w: null,
    processes: [],
    health,
    problem,
  };
}

/** A good report, plus every GPU an earlier report had that this one lacks, as lost. */
export function withMissingAsLost(readings: readonly GpuReading[], known: ReadonlyMap<string, GpuReading>, sinceIso: (uuid: string) => string): GpuReading[] {
  const seen = new Set(readings.map((g) => g.uuid));
  const missing = [...known.values()]
    .filter((g) => !seen.has(g.uuid))
    .map((g) => unreadable(g, 'lost', `missing from nvidia-smi's report since ${sinceIso(g.uuid)}`));
  return [...readings, ...missing].sort((a, b) => a.index - b.index);
}

/**
 * The last good inventory while nvidia-smi fails: each GPU the failure names (by bus id or index)
 * lost or in error, with what nvidia-smi said; the others kept, their readings unknown (null).
 */
export function staleReadings(lastGood: readonly GpuReading[], failureOutput: string, reason: string): GpuReading[] {
  const troubles = troublesIn(failureOutput);
  return lastGood.map((g) => {
    const named = troubles.find((t) => (t.busId !== null && g.pci_bus_id !== null ? sameBusId(t.busId, g.pci_bus_id) : t.index === g.index));
    if (named) return unreadable(g, named.health, named.problem);
    if (g.health === 'lost' || g.health === 'error') return g;
    // Unknown now, but its processes are kept: a GPU another program was using is not free because nvidia-smi broke.
    const { health: _health, problem: _problem, ...rest } = unreadable(g, 'lost', reason);
    return { ...rest, processes: g.processes };
  });
}

/** hello's inventory entry; the wire allows no negative size, and MIG fields only where the report has them. */
export function toInventory(g: GpuReading): InventoryGpu {
  const base: InventoryGpu = { uuid: g.uuid, index: g.index, name: g.name, memory_total_bytes: g.memory_total_bytes === null ? null : Math.max(0, g.memory_total_bytes) };
  if (g.mig_mode === null) return base;
  return g.mig_mode ? { ...base, mig_mode: true, mig_devices: g.mig_devices } : { ...base, mig_mode: false };
}
