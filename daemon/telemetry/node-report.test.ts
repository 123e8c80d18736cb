import { describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { statusMessage as statusMessageSchema } from '../../scheduler/contract/protocol.js';
import type { GpuSample } from './gpu-reading.js';
import { composeStatus, readInventory, readStatus, type NodeSensors } from './node-report.js';

const MiB = 2 ** 20;
const host = { load: 0.25, cpus: 16, memory_total_bytes: 64 * 2 ** 30, memory_free_bytes: 32 * 2 ** 30, disk_total_bytes: null, disk_free_bytes: null };
const ours: GpuSample = {
  uuid: 'GPU-ours',
  index: 0,
  utilization_pct: 97,
  memory_used_bytes: 70_000 * MiB,
  memory_total_bytes: 81_559 * MiB,
  temperature_c: 71,
  power_w: null,
  processes: [{ pid: 4242, name: 'python train.py', used_memory_bytes: 70_000 * MiB }],
};
const someoneElses: GpuSample = { ...ours, uuid: 'GPU-theirs', index: 1, processes: [{ pid: 77, name: 'miner', used_memory_bytes: null }] };
const idle: GpuSample = { ...ours, uuid: 'GPU-idle', index: 2, utilization_pct: 0, processes: [] };

describe("a node's reports", () => {
  it('a GPU with processes that none of the node’s runs holds is foreign-busy; the readings go out as nvidia-smi gave them', () => {
    const status = composeStatus(new Date('2026-01-01T12:00:00Z'), [ours, someoneElses, idle], host, new Set(['GPU-ours']));
    expect(status.gpus.map((g) => [g.uuid, g.processes, g.foreign_busy])).toEqual([
      ['GPU-ours', 1, false],
      ['GPU-theirs', 1, true],
      ['GPU-idle', 0, false],
    ]);
    expect(status.gpus[0]).toEqual({ ...ours, processes: 1, foreign_busy: false, health: 'ok', problem: null });
    expect(status.gpus.map((g) => g.health)).toEqual(['ok', 'busy_foreign', 'ok']);
    // N/A stays null on the wire, and the message is one the leader accepts.
    expect(status.gpus[0]?.power_w).toBeNull();
    expect(statusMessageSchema.parse(status)).toEqual(status);
  });

  it("hello's inventory is the GPUs and the host's CPUs and memory; a failed GPU sample reports no GPUs", async () => {
    const sensors: NodeSensors = {
      gpu: {
        inventory: async () => [{ uuid: 'GPU-ours', index: 0, name: 'NVIDIA H100 80GB HBM3', memory_total_bytes: 81_559 * MiB }],
        sample: async () => {
          throw new Error('nvidia-smi crashed');
        },
      },
      host: { sample: async () => host },
    };
    expect(await readInventory(sensors)).toEqual({
      gpus: [{ uuid: 'GPU-ours', index: 0, name: 'NVIDIA H100 80GB HBM3', memory_total_bytes: 81_559 * MiB }],
      cpus: 16,
      memory_bytes: 64 * 2 ** 30,
    });
    const status = await readStatus(sensors, { now: () => new Date('2026-01-01T12:00:00Z'), ours: () => new Set(), log: silentLog });
    expect(status).toEqual({ type: 'status', at: '2026-01-01T12:00:00.000Z', gpus: [], host });
  });
});
