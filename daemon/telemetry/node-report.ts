/**
 * A node's own words about itself, from one look at its GPUs and its host: `hello`'s inventory and
 * the `status` message (DESIGN §7). `secd node` sends them over the websocket (daemon/node/
 * node-agent.ts); `secd up`'s in-process node hands the very same messages to its leader
 * (daemon/node/local-node.ts), so the leader reads every node one way. The readings arrive in the
 * wire's words already (gpu-reading.ts, host-telemetry.ts): nothing here renames a field.
 *
 * The foreign-busy rule lives here and only here: a GPU with processes on it that none of this
 * node's runs holds is busy with someone else's work, and the leader gives it to nobody. Each GPU's
 * `health` is decided here too: `lost` or `error` as telemetry read it (gpu-reading.ts), else
 * `busy_foreign` by that rule, else `ok`. A status sent while nvidia-smi fails carries `gpus_stale`.
 */
import type { Log } from '../../scheduler/common/log.js';
import type { HelloMessage, HostStatus, StatusMessage } from '../../scheduler/contract/protocol.js';
import type { GpuSample } from './gpu-reading.js';
import type { GpuTelemetry } from './gpu-telemetry.js';
import type { HostTelemetry } from './host-telemetry.js';

/** Where a node's reports are read from (gpu-telemetry.ts and host-telemetry.ts in production). */
export interface NodeSensors {
  gpu: Pick<GpuTelemetry, 'inventory' | 'sample'> & Partial<Pick<GpuTelemetry, 'stale'>>;
  host: Pick<HostTelemetry, 'sample'>;
}

/** `hello`'s inventory: the GPUs, and the host's CPUs and memory. */
export async function readInventory(sensors: NodeSensors): Promise<HelloMessage['inventory']> {
  const [gpus, host] = await Promise.all([sensors.gpu.inventory(), sensors.host.sample()]);
  return { gpus, cpus: host.cpus, memory_bytes: host.memory_total_bytes };
}

/**
 * A status message from a fresh sample. A failed GPU sample reads as no GPUs (and is logged); `ours`
 * is asked after sampling, so a run that started meanwhile does not make its own GPU look foreign.
 */
export async function readStatus(sensors: NodeSensors, deps: { now(): Date; ours(): ReadonlySet<string>; log: Log }): Promise<StatusMessage> {
  const [gpus, host] = await Promise.all([
    sensors.gpu.sample().catch((err: unknown): GpuSample[] => {
      deps.log.warn({ err }, 'GPU sample failed');
      return [];
    }),
    sensors.host.sample(),
  ]);
  const status = composeStatus(deps.now(), gpus, host, deps.ours());
  const stale = sensors.gpu.stale?.() ?? null;
  return stale ? { ...status, gpus_stale: stale } : status;
}

/** The status message for one sample: a GPU with processes that no secd run holds is foreign-busy. */
export function composeStatus(at: Date, gpus: readonly GpuSample[], host: HostStatus, ours: ReadonlySet<string>): StatusMessage {
  return {
    type: 'status',
    at: at.toISOString(),
    gpus: gpus.map(({ processes, ...g }) => {
      const foreign = processes.length > 0 && !ours.has(g.uuid);
      const troubled = g.health === 'lost' || g.health === 'error';
      return {
        ...g,
        processes: processes.length,
        foreign_busy: foreign,
        health: troubled ? g.health! : foreign ? ('busy_foreign' as const) : ('ok' as const),
        problem: troubled ? (g.problem ?? null) : null,
      };
    }),
    host,
  };
}
