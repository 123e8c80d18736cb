/**
 * GPU and host telemetry of `secd up`'s in-process node: the same readings a `secd node` reports
 * over the websocket, sampled every `report_interval_ms` and kept for the planner (which GPUs exist,
 * which are busy with someone else's processes) and the API.
 */
import type { Log } from '../../scheduler/common/log.js';
import type { GpuInfo, GpuSample } from './gpu-reading.js';
import { createGpuTelemetry } from './gpu-telemetry.js';
import { createHostTelemetry, type HostSample } from './host-telemetry.js';

/** The latest readings of this machine. */
export interface LocalTelemetry {
  /** GPUs found at start (empty until the first inventory, or without nvidia-smi). */
  inventory(): GpuInfo[];
  /** The last GPU samples and host figures, or null before the first. */
  latest(): { gpus: GpuSample[]; host: HostSample; at: string } | null;
  /** GPUs with processes on them that no run of this node holds. */
  foreignBusyGpus(): string[];
  close(): void;
}

/** Start sampling; `gpusInUse` names the GPUs the node's own runs hold (their processes are not foreign). */
export async function startLocalTelemetry(opts: {
  nvidiaSmi: string;
  diskPath: string;
  intervalMs: number;
  log: Log;
  now(): Date;
  gpusInUse(): Set<string>;
}): Promise<LocalTelemetry> {
  const gpu = createGpuTelemetry({ command: opts.nvidiaSmi, log: opts.log });
  const host = createHostTelemetry({ diskPath: opts.diskPath, log: opts.log });
  let inventory: GpuInfo[] = await gpu.inventory().catch(() => []);
  let latest: { gpus: GpuSample[]; host: HostSample; at: string } | null = null;
  let busy = false;
  const sample = async () => {
    if (busy) return;
    busy = true;
    try {
      const [gpus, figures] = await Promise.all([gpu.sample().catch(() => [] as GpuSample[]), host.sample()]);
      if (inventory.length === 0 && gpus.length > 0) inventory = await gpu.inventory().catch(() => inventory);
      latest = { gpus, host: figures, at: opts.now().toISOString() };
    } catch (err) {
      opts.log.warn({ err }, 'could not sample this machine');
    } finally {
      busy = false;
    }
  };
  await sample();
  const timer = setInterval(() => void sample(), opts.intervalMs);
  timer.unref();
  return {
    inventory: () => inventory,
    latest: () => latest,
    foreignBusyGpus() {
      const ours = opts.gpusInUse();
      return (latest?.gpus ?? []).filter((g) => g.processes.length > 0 && !ours.has(g.uuid)).map((g) => g.uuid);
    },
    close() {
      clearInterval(timer);
      gpu.close();
    },
  };
}
