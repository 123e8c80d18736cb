/**
 * MIG devices and GPU health as nvidia-smi shows them: the telegraf A100 report with MIG enabled
 * and its `-L` listing read into MIG devices under their GPU; a GPU fallen off the bus keeping the
 * last inventory, marked stale, with that GPU lost and the others still listed; a GPU missing from a
 * later report listed as lost; `[GPU is lost]` in the stream read as lost.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { statusMessage } from '../../scheduler/contract/protocol.js';
import { nvidiaSmiFixture, writeFakeNvidiaSmi } from '../../test/support/fake-nvidia-smi.js';
import { removeFakeGpu, setFakeNvidiaSmiFailure } from '../../test/support/fake-nvidia-smi-faults.js';
import { troublesIn } from './gpu-reading.js';
import { createGpuTelemetry, type GpuSamplingMode, type GpuTelemetry } from './gpu-telemetry.js';
import { readStatus } from './node-report.js';
import { parseNvidiaSmiList } from './nvidia-smi-list.js';
import { createQueryGpuCsvReader, sampleFromQueryGpuRow } from './query-gpu-csv.js';

const MiB = 1024 * 1024;
const A100_MIG = 'telegraf_a100-sxm4-80gb-mig_drv535.54.03.xml';
const K80 = 'openpai_4x-tesla-k80_drv430.26_processes.xml';
// The K80 report's GPU at bus id 00002DF7:00:00.0, the one k80-gpu-lost_q-x.txt says is lost.
const K80_LOST = 'GPU-b01b80eb-0f18-1df0-cf88-0725bd90f1e1';

const scratch: string[] = [];
const open: GpuTelemetry[] = [];
async function fakeDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'secd-fake-smi-'));
  scratch.push(dir);
  return dir;
}
function telemetry(command: string, mode: GpuSamplingMode): GpuTelemetry {
  const t = createGpuTelemetry({ command, log: silentLog, mode, intervalMs: 100 });
  open.push(t);
  return t;
}
afterEach(() => {
  for (const t of open.splice(0)) t.close();
});
afterAll(async () => {
  await Promise.all(scratch.map((d) => fs.rm(d, { recursive: true, force: true })));
});

describe('MIG', () => {
  it('reads the A100 in MIG mode with its four 1g.20gb devices by MIG UUID, memory from the report', async () => {
    const command = await writeFakeNvidiaSmi(await fakeDir(), A100_MIG);
    const [gpu, ...rest] = await telemetry(command, 'poll').inventory();
    expect(rest).toEqual([]);
    expect(gpu).toEqual({
      uuid: 'GPU-513536b6-7d19-9063-b049-1e69664bb298',
      index: 1,
      name: 'NVIDIA A100-SXM4-80GB',
      memory_total_bytes: 81920 * MiB,
      mig_mode: true,
      mig_devices: [
        { uuid: 'MIG-5e1a0f3c-2b7d-5a48-9c61-0d3f8e2b7a14', index: 0, profile: '1g.20gb', memory_total_bytes: 19968 * MiB },
        { uuid: 'MIG-a9c4d2e7-61f0-5b3a-8e25-47c9b1d06f38', index: 1, profile: '1g.20gb', memory_total_bytes: 19968 * MiB },
        { uuid: 'MIG-0b7e93f1-c45a-5d62-a718-9e3c2f5d4b80', index: 2, profile: '1g.20gb', memory_total_bytes: 19968 * MiB },
        { uuid: 'MIG-d63f28a5-7e91-5c04-b3d6-18a7e0c9f2e5', index: 3, profile: '1g.20gb', memory_total_bytes: 19968 * MiB },
      ],
    });
  });

  it('a GPU with MIG off says so; a report without mig_mode (DTD v10) says nothing', async () => {
    const a5000 = await writeFakeNvidiaSmi(await fakeDir(), 'telegraf_2x-rtx-a5000_drv590.44.01_processes.xml');
    expect((await telemetry(a5000, 'poll').inventory())[0]).not.toHaveProperty('mig_mode');
    const xml = (await fs.readFile(nvidiaSmiFixture(A100_MIG), 'utf8')).replace(/<current_mig>Enabled/, '<current_mig>Disabled');
    const off = await writeFakeNvidiaSmi(await fakeDir(), { xml });
    expect((await telemetry(off, 'poll').inventory())[0]).toMatchObject({ mig_mode: false });
    expect((await telemetry(off, 'poll').inventory())[0]).not.toHaveProperty('mig_devices');
  });

  it('reads nvidia-smi -L in its current and its pre-R470 form', () => {
    const listed = parseNvidiaSmiList(
      [
        'GPU 0: NVIDIA A100 80GB PCIe (UUID: GPU-4101de38-535a-4255-ac14-a63e072d7a10)',
        '  MIG 3g.40gb     Device  0: (UUID: MIG-d771d938-b556-4f9d-b742-2dd26b864023)',
        '  MIG 1g.10gb     Device  2: (UUID: MIG-761ea9d1-82ac-41cb-9e19-d3593973f144)',
        'GPU 1: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)',
        '  MIG 3g.20gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0)',
        'GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-c958aaaa-0000-0000-0000-000000000000)',
      ].join('\n'),
    );
    expect(listed.get('GPU-4101de38-535a-4255-ac14-a63e072d7a10')).toEqual([
      { uuid: 'MIG-d771d938-b556-4f9d-b742-2dd26b864023', profile: '3g.40gb', index: 0 },
      { uuid: 'MIG-761ea9d1-82ac-41cb-9e19-d3593973f144', profile: '1g.10gb', index: 2 },
    ]);
    expect(listed.get('GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77')).toEqual([
      { uuid: 'MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/1/0', profile: '3g.20gb', index: 0 },
    ]);
    expect(listed.get('GPU-c958aaaa-0000-0000-0000-000000000000')).toEqual([]);
  });
});

describe.each<GpuSamplingMode>(['poll', 'stream'])('a lost GPU (%s mode)', (mode) => {
  it('nvidia-smi failing keeps the last inventory, stale, with the GPU it names lost; it answers again and all is fresh', async () => {
    const dir = await fakeDir();
    const command = await writeFakeNvidiaSmi(dir, K80);
    const t = telemetry(command, mode);
    expect((await t.sample()).map((g) => g.health ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok']);
    await setFakeNvidiaSmiFailure(dir, { output: 'k80-gpu-lost_q-x.txt', exitCode: 15 });

    expect((await t.inventory()).map((g) => g.uuid)).toHaveLength(4);
    const samples = await t.sample();
    expect(samples.map((g) => g.index)).toEqual([0, 1, 2, 3]);
    const lost = samples.find((g) => g.uuid === K80_LOST)!;
    expect(lost).toMatchObject({ health: 'lost', utilization_pct: null, temperature_c: null });
    expect(lost.problem).toMatch(/^nvidia-smi: Unable to determine the device handle for GPU 00002DF7:00:00.0: GPU is lost/);
    expect(samples.filter((g) => g.health === 'lost')).toHaveLength(1);
    expect(t.stale()).toEqual({ since: expect.any(String), reason: expect.stringMatching(/-q -x failed \(exit code 15\): Unable to determine the device handle/) });

    const status = await readStatus({ gpu: t, host: { sample: async () => host } }, { now: () => new Date('2026-01-01T12:00:00Z'), ours: () => new Set(), log: silentLog });
    expect(statusMessage.parse(status)).toEqual(status);
    expect(status.gpus_stale).toEqual(t.stale());
    expect(status.gpus.map((g) => g.health)).toEqual(['ok', 'busy_foreign', 'lost', 'ok']);

    await setFakeNvidiaSmiFailure(dir, null);
    await t.inventory();
    expect(t.stale()).toBeNull();
    expect((await t.sample()).every((g) => g.health === undefined)).toBe(true);
  });
});

const host = { load: 0.1, cpus: 8, memory_total_bytes: 32 * 2 ** 30, memory_free_bytes: 16 * 2 ** 30, disk_total_bytes: null, disk_free_bytes: null };

it('a GPU missing from a later report stays listed, lost, and is back once reported again', async () => {
  const dir = await fakeDir();
  const command = await writeFakeNvidiaSmi(dir, K80);
  const t = telemetry(command, 'poll');
  await t.inventory();
  await removeFakeGpu(dir, K80_LOST);
  const samples = await t.sample();
  expect(samples.map((g) => g.index)).toEqual([0, 1, 2, 3]);
  expect(samples[2]).toMatchObject({ uuid: K80_LOST, health: 'lost', problem: expect.stringMatching(/^missing from nvidia-smi's report since \d{4}-/) });
  await writeFakeNvidiaSmi(dir, K80);
  expect((await t.sample())[2]).not.toHaveProperty('health');
});

it('reads the device-handle lines drivers print for a lost or failing GPU', () => {
  expect(troublesIn('Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost.  Reboot the system to recover this GPU\n')).toEqual([
    { busId: '0000:3B:00.0', index: null, health: 'lost', problem: expect.stringContaining('GPU is lost') },
  ]);
  expect(troublesIn('Unable to determine the device handle for GPU0000:08:00.0: Unknown Error')).toMatchObject([{ busId: '0000:08:00.0', index: null, health: 'error' }]);
  expect(troublesIn('Unable to determine the device handle for GPU1: 0000:34:00.0: Unknown Error')).toMatchObject([{ busId: '0000:34:00.0', index: 1, health: 'error' }]);
  expect(troublesIn('No devices were found')).toEqual([]);
});

it('a stream line with [GPU is lost] is a lost GPU, its values unknown', () => {
  const reader = createQueryGpuCsvReader();
  const line = reader.read('2, GPU-b01b80eb-0f18-1df0-cf88-0725bd90f1e1, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]');
  if (line.kind !== 'row') throw new Error(`expected a row, got ${line.kind}`);
  const s = sampleFromQueryGpuRow(line.row, line.trouble);
  expect(s).toMatchObject({ ok: true, sample: { index: 2, health: 'lost', utilization_pct: null, memory_total_bytes: null, problem: 'nvidia-smi: GPU is lost' } });
});
