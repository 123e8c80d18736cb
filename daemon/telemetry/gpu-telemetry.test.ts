import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Log } from '../../scheduler/common/log.js';
import {
  NVIDIA_SMI_FIXTURES_DIR,
  fakeNvidiaSmiCalls,
  fakeStreamPid,
  nvidiaSmiFixture,
  setFakeGpuValues,
  writeFakeNvidiaSmi,
} from '../../test/support/fake-nvidia-smi.js';
import { createGpuTelemetry, type GpuSamplingMode, type GpuTelemetry } from './gpu-telemetry.js';
import { parseNvidiaSmiXml, readingsFromNodeNvidiaSmiJson } from './nvidia-smi-xml.js';
import { createQueryGpuCsvReader, sampleFromQueryGpuRow } from './query-gpu-csv.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

interface Entry {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  obj: object;
}

function recordingLog(): { log: Log; entries: Entry[] } {
  const entries: Entry[] = [];
  const make = (): Log => ({
    debug: (obj, msg = '') => void entries.push({ level: 'debug', msg, obj }),
    info: (obj, msg = '') => void entries.push({ level: 'info', msg, obj }),
    warn: (obj, msg = '') => void entries.push({ level: 'warn', msg, obj }),
    error: (obj, msg = '') => void entries.push({ level: 'error', msg, obj }),
    child: () => make(),
  });
  return { log: make(), entries };
}

// Expected values, read by hand from the files in test/fixtures/nvidia-smi (line numbers in comments).
interface ExpectedGpu {
  uuid: string;
  index: number;
  name: string;
  totalMiB: number | null;
  usedMiB: number | null;
  util: number | null;
  tempC: number | null;
  powerW: number | null;
  processes: Array<{ pid: number; name: string; usedMiB: number | null }>;
}

const TESLA_K80 = 'openpai_4x-tesla-k80_drv430.26_processes.xml';
const RTX_2080TI = 'openpai_2x-rtx-2080ti_drv410.73.xml';
const RTX_A5000 = 'telegraf_2x-rtx-a5000_drv590.44.01_processes.xml';
const RTX_4000_ADA = 'telegraf_rtx-4000-sff-ada_drv595.84_processes.xml';
const H100_CSV = 'nvidia-gpu-exporter_h100-80gb-hbm3_drv590.48.01_query-gpu-load.csv';

const FIXTURES: Array<{ file: string; gpus: ExpectedGpu[] }> = [
  {
    // Document order has minor numbers 1, 2, 3, 0; GPUs come out sorted by minor number.
    file: TESLA_K80,
    gpus: [
      // lines 779-1023
      { uuid: 'GPU-3341aba2-f01d-2c1f-7dd4-e389779faec2', index: 0, name: 'Tesla K80', totalMiB: 11441, usedMiB: 0, util: 0, tempC: 26, powerW: 34.44, processes: [] },
      // lines 8-264
      {
        uuid: 'GPU-c3b26f7a-8dcb-619c-fa1b-8029265a4db0', index: 1, name: 'Tesla K80', totalMiB: 11441, usedMiB: 587, util: 99, tempC: 64, powerW: 135.72,
        processes: [{ pid: 58813, name: 'python', usedMiB: 576 }],
      },
      // lines 269-525
      {
        uuid: 'GPU-b01b80eb-0f18-1df0-cf88-0725bd90f1e1', index: 2, name: 'Tesla K80', totalMiB: 11441, usedMiB: 587, util: 99, tempC: 69, powerW: 139.71,
        processes: [{ pid: 58642, name: 'python', usedMiB: 576 }],
      },
      // lines 530-774
      { uuid: 'GPU-30bc2701-3bc2-5f35-0ebd-9867a077e138', index: 3, name: 'Tesla K80', totalMiB: 11441, usedMiB: 0, util: 0, tempC: 28, powerW: 32.27, processes: [] },
    ],
  },
  {
    // ECC unsupported (N/A) everywhere; the zeros here are real zeros and must stay 0.
    file: RTX_2080TI,
    gpus: [
      { uuid: 'GPU-57567e11-0be2-381b-5132-2ad95c262e58', index: 0, name: 'GeForce RTX 2080 Ti', totalMiB: 10989, usedMiB: 0, util: 0, tempC: 24, powerW: 2.12, processes: [] },
      { uuid: 'GPU-ef1d0068-5bfd-f1e4-7e79-ff35d71d44b8', index: 1, name: 'GeForce RTX 2080 Ti', totalMiB: 10989, usedMiB: 0, util: 0, tempC: 24, powerW: 19.11, processes: [] },
    ],
  },
  {
    // DTD v13: power in <gpu_power_readings><average_power_draw>; minor numbers 1, 0 in document order.
    file: RTX_A5000,
    gpus: [
      {
        uuid: 'GPU-12345678-aaaa-bbbb-cccc-0123456789cd', index: 0, name: 'NVIDIA RTX A5000', totalMiB: 24564, usedMiB: 17253, util: 0, tempC: 15, powerW: 13.6,
        processes: [{ pid: 100477, name: '/root/src/llama.cpp/build/bin/llama-server', usedMiB: 17246 }],
      },
      {
        uuid: 'GPU-12345678-aaaa-bbbb-cccc-0123456789ab', index: 1, name: 'NVIDIA RTX A5000', totalMiB: 24564, usedMiB: 22437, util: 0, tempC: 13, powerW: 6.41,
        processes: [{ pid: 100477, name: '/root/src/llama.cpp/build/bin/llama-server', usedMiB: 22430 }],
      },
    ],
  },
  {
    // "Requested functionality has been deprecated" in display_mode, power_state and clocks.
    file: RTX_4000_ADA,
    gpus: [
      {
        uuid: 'GPU-37037c3f-65c8-ec4d-24a9-420204ad8026', index: 0, name: 'NVIDIA RTX 4000 SFF Ada Generation', totalMiB: 20475, usedMiB: 3534, util: 0, tempC: 38, powerW: 8.81,
        processes: [
          { pid: 1842, name: 'cosmic-comp', usedMiB: 410 },
          { pid: 3190, name: '/usr/bin/code', usedMiB: 451 },
          { pid: 4937, name: 'python', usedMiB: 160 },
          { pid: 34626, name: '/usr/lib/chromium/chromium', usedMiB: 183 },
        ],
      },
    ],
  },
  {
    // A `--query-gpu --format=csv` capture under full load; the fake builds its -q -x report from it.
    file: H100_CSV,
    gpus: [
      { uuid: 'GPU-00000000-0000-0000-0000-000000000000', index: 0, name: 'NVIDIA H100 80GB HBM3', totalMiB: 81559, usedMiB: 19818, util: 100, tempC: 59, powerW: 631.95, processes: [] },
    ],
  },
];

const bytes = (mib: number | null) => (mib === null ? null : mib * MiB);
// In the status message's words (scheduler/contract/protocol.ts): nothing maps them again.
const infoOf = (g: ExpectedGpu) => ({ uuid: g.uuid, index: g.index, name: g.name, memory_total_bytes: bytes(g.totalMiB) });
const sampleOf = (g: ExpectedGpu) => ({
  uuid: g.uuid,
  index: g.index,
  utilization_pct: g.util,
  memory_used_bytes: bytes(g.usedMiB),
  memory_total_bytes: bytes(g.totalMiB),
  temperature_c: g.tempC,
  power_w: g.powerW,
  processes: g.processes.map((p) => ({ pid: p.pid, name: p.name, used_memory_bytes: bytes(p.usedMiB) })),
});

const scratch: string[] = [];
const open: GpuTelemetry[] = [];

async function fakeDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'secd-fake-smi-'));
  scratch.push(dir);
  return dir;
}

function telemetry(opts: Parameters<typeof createGpuTelemetry>[0]): GpuTelemetry {
  const t = createGpuTelemetry(opts);
  open.push(t);
  return t;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

afterEach(() => {
  for (const t of open.splice(0)) t.close();
});
afterAll(async () => {
  await Promise.all(scratch.map((d) => fs.rm(d, { recursive: true, force: true })));
});

const MODES: GpuSamplingMode[] = ['poll', 'stream'];

it('the table covers every recorded nvidia-smi fixture', async () => {
  // The MIG and lost-GPU fixtures (and -L listings beside a report) are read in gpu-mig-health.test.ts.
  const elsewhere = new Set(['telegraf_a100-sxm4-80gb-mig_drv535.54.03.xml']);
  const files = (await fs.readdir(NVIDIA_SMI_FIXTURES_DIR)).filter((f) => /\.(xml|csv)$/.test(f) && !elsewhere.has(f)).sort();
  expect(files).toEqual(FIXTURES.map((f) => f.file).sort());
});

describe.each(MODES)('%s mode, through a fake nvidia-smi on disk', (mode) => {
  it.each(FIXTURES)('$file: inventory and samples show the recorded values', async ({ file, gpus }) => {
    const command = await writeFakeNvidiaSmi(await fakeDir(), file);
    const t = telemetry({ command, log: recordingLog().log, mode, intervalMs: 100 });
    expect(await t.inventory()).toEqual(gpus.map(infoOf));
    expect(await t.sample()).toEqual(gpus.map(sampleOf));
  });

  it('a GPU that reports N/A, [Not Supported] or a deprecated field shows null, not 0', async () => {
    const dir = await fakeDir();
    const command = await writeFakeNvidiaSmi(dir, RTX_2080TI);
    await setFakeGpuValues(dir, {
      index: 1,
      utilizationPct: null,
      powerW: '[Not Supported]',
      temperatureC: 'Requested functionality has been deprecated',
    });
    const t = telemetry({ command, log: recordingLog().log, mode, intervalMs: 100 });
    const [first, second] = await t.sample();
    expect(second).toMatchObject({ index: 1, utilization_pct: null, power_w: null, temperature_c: null, memory_used_bytes: 0 });
    expect(first).toMatchObject({ index: 0, utilization_pct: 0, power_w: 2.12, temperature_c: 24 });
  });

  it('shows new values once the GPUs behind nvidia-smi report them', async () => {
    const dir = await fakeDir();
    const command = await writeFakeNvidiaSmi(dir, TESLA_K80);
    const t = telemetry({ command, log: recordingLog().log, mode, intervalMs: 100 });
    expect((await t.sample())[3]?.utilization_pct).toBe(0);
    await setFakeGpuValues(dir, {
      uuid: 'GPU-30bc2701-3bc2-5f35-0ebd-9867a077e138',
      utilizationPct: 73,
      memoryUsedMiB: 2048,
      temperatureC: 81,
      powerW: 250.5,
    });
    await expect.poll(async () => (await t.sample())[3], { timeout: 5_000, interval: 50 }).toMatchObject({
      index: 3,
      utilization_pct: 73,
      memory_used_bytes: 2048 * MiB,
      temperature_c: 81,
      power_w: 250.5,
    });
  });

  it('a missing nvidia-smi means zero GPUs, logged once, never an exception', async () => {
    const { log, entries } = recordingLog();
    const t = telemetry({ command: path.join(await fakeDir(), 'nvidia-smi'), log, mode, intervalMs: 100 });
    expect(await t.inventory()).toEqual([]);
    expect(await t.sample()).toEqual([]);
    expect(await t.sample()).toEqual([]);
    expect(await t.inventory()).toEqual([]);
    const said = entries.filter((e) => e.level === 'warn' || e.level === 'error');
    expect(said).toHaveLength(1);
    expect(said[0]?.msg).toMatch(/nvidia-smi not found: this node reports zero GPUs/);
  });

  it('nvidia-smi printing garbage means zero GPUs and a clear logged error', async () => {
    const { log, entries } = recordingLog();
    const command = await writeFakeNvidiaSmi(await fakeDir(), { xml: 'Segmentation fault (core dumped)\n', csv: 'Segmentation fault (core dumped)\n' });
    const t = telemetry({ command, log, mode, intervalMs: 100 });
    expect(await t.inventory()).toEqual([]);
    expect(await t.sample()).toEqual([]);
    const errors = entries.filter((e) => e.level === 'error').map((e) => e.msg);
    expect(errors[0]).toMatch(/nvidia-smi -q -x printed something that is not XML/);
  });
});

it('a report that turns unreadable keeps the last inventory and logs why', async () => {
  const { log, entries } = recordingLog();
  const dir = await fakeDir();
  const command = await writeFakeNvidiaSmi(dir, TESLA_K80);
  const t = telemetry({ command, log, mode: 'poll' });
  const before = await t.inventory();
  expect(before.map((g) => g.index)).toEqual([0, 1, 2, 3]);
  await writeFakeNvidiaSmi(dir, { xml: '<nvidia_smi_log><gpu id="0"><product_name>half a rep', csv: '' });
  expect(await t.inventory()).toEqual(before);
  expect(entries.find((e) => e.level === 'error')?.msg).toMatch(/not XML/);
});

it('a driver that cannot be reached means zero GPUs, with nvidia-smi’s own sentence in the log', async () => {
  const { log, entries } = recordingLog();
  const command = path.join(await fakeDir(), 'nvidia-smi');
  await fs.writeFile(
    command,
    "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\"\nexit 9\n",
    { mode: 0o755 },
  );
  const t = telemetry({ command, log, mode: 'stream', intervalMs: 100 });
  expect(await t.inventory()).toEqual([]);
  expect(await t.sample()).toEqual([]);
  expect(entries.find((e) => e.level === 'error')?.msg).toMatch(/exit code 9\): NVIDIA-SMI has failed because it couldn't communicate/);
});

it('reads the same GPUs from -q -x as node-nvidia-smi’s own CLI returns', async () => {
  const cli = path.resolve('node_modules/node-nvidia-smi/node-nvidia-smi.js');
  for (const file of [TESLA_K80, RTX_2080TI, RTX_A5000, RTX_4000_ADA]) {
    const dir = await fakeDir();
    await writeFakeNvidiaSmi(dir, file);
    const { stdout } = await run(process.execPath, [cli], { env: { ...process.env, PATH: `${dir}:${process.env['PATH']}` }, maxBuffer: 16 * MiB });
    const viaNodeNvidiaSmi = readingsFromNodeNvidiaSmiJson(JSON.parse(stdout));
    expect(viaNodeNvidiaSmi.ok, file).toBe(true);
    expect(viaNodeNvidiaSmi).toEqual(await parseNvidiaSmiXml(await fs.readFile(nvidiaSmiFixture(file), 'utf8')));
  }
});

it('reads the 212-column H100 capture by its header: 100 % busy, 631.95 W, every [N/A] null', async () => {
  const [header, values] = (await fs.readFile(nvidiaSmiFixture(H100_CSV), 'utf8')).split('\n');
  const reader = createQueryGpuCsvReader();
  expect(reader.read(header!)).toMatchObject({ kind: 'header' });
  const line = reader.read(values!);
  if (line.kind !== 'row') throw new Error(`expected a row, got ${JSON.stringify(line)}`);
  const row = line.row;
  expect(Object.keys(row)).toHaveLength(212);
  expect(row['name']).toBe('NVIDIA H100 80GB HBM3');
  expect(row['power.draw.instant']).toBe('625.68 W');
  expect(row['fan.speed']).toBeNull(); // [N/A]
  expect(row['module.power.draw.average']).toBeNull(); // [N/A]
  expect(row['hostname']).toBeNull(); // [N/A], the last column
  expect(row['fabric.health.summary']).toBeNull(); // N/A without brackets
  expect(row['display_mode']).toBeNull(); // [Requested functionality has been deprecated]
  expect(row['clocks.applications.graphics']).toBeNull(); // same
  expect(row['platform.chassis_serial_number']).toBeNull(); // empty
  // 61 "[N/A]" + 6 "N/A" + 6 deprecated + 1 empty, counted in the file by hand (grep).
  expect(Object.values(row).filter((v) => v === null)).toHaveLength(74);
  expect(sampleFromQueryGpuRow(row)).toEqual({
    ok: true,
    sample: {
      uuid: 'GPU-00000000-0000-0000-0000-000000000000',
      index: 0,
      utilization_pct: 100,
      memory_used_bytes: 19818 * MiB,
      memory_total_bytes: 81559 * MiB,
      temperature_c: 59,
      power_w: 631.95,
      processes: [],
    },
  });
});

describe('the long-lived stream', () => {
  it('samples without starting nvidia-smi each time; processes refresh at their own slower pace', async () => {
    const dir = await fakeDir();
    const command = await writeFakeNvidiaSmi(dir, TESLA_K80);
    const t = telemetry({ command, log: recordingLog().log, mode: 'stream', intervalMs: 100, processRefreshMs: 60_000 });
    for (let i = 0; i < 5; i++) await t.sample();
    const calls = await fakeNvidiaSmiCalls(dir);
    expect(calls.filter((c) => c === '-q -x')).toHaveLength(1);
    expect(calls.filter((c) => c.includes('-lms 100'))).toHaveLength(1);
  });

  it('picks up new processes once the process refresh comes round', async () => {
    const dir = await fakeDir();
    const command = await writeFakeNvidiaSmi(dir, RTX_2080TI);
    const t = telemetry({ command, log: recordingLog().log, mode: 'stream', intervalMs: 100, processRefreshMs: 200 });
    expect((await t.sample())[0]?.processes).toEqual([]);
    await setFakeGpuValues(dir, { index: 0, processes: [{ pid: 4242, name: 'python3 train.py', usedMemoryMiB: 1500 }] });
    await expect
      .poll(async () => (await t.sample())[0]?.processes, { timeout: 5_000, interval: 100 })
      .toEqual([{ pid: 4242, name: 'python3 train.py', used_memory_bytes: 1500 * MiB }]);
  });

  it('is restarted after its process dies, and killed on close()', async () => {
    const { log, entries } = recordingLog();
    const dir = await fakeDir();
    const command = await writeFakeNvidiaSmi(dir, TESLA_K80);
    const t = telemetry({ command, log, mode: 'stream', intervalMs: 100 });
    expect((await t.sample())[0]?.utilization_pct).toBe(0);
    const first = await fakeStreamPid(dir);
    expect(first).not.toBeNull();
    process.kill(first!, 'SIGKILL');
    await setFakeGpuValues(dir, { index: 0, utilizationPct: 55 });
    await expect.poll(async () => (await t.sample())[0]?.utilization_pct, { timeout: 5_000, interval: 50 }).toBe(55);
    const second = await fakeStreamPid(dir);
    expect(second).not.toBe(first);
    expect(alive(second!)).toBe(true);
    expect(entries.some((e) => e.level === 'warn' && /nvidia-smi stream stopped; restarting it/.test(e.msg))).toBe(true);

    t.close();
    await expect.poll(() => alive(second!), { timeout: 3_000, interval: 50 }).toBe(false);
    expect(await t.sample()).toEqual([]);
  });

  // An nvidia-smi whose -q -x works but whose `--query-gpu … -lms` run fails or stays silent.
  async function brokenStreamNvidiaSmi(onQuery: string): Promise<string> {
    const command = path.join(await fakeDir(), 'nvidia-smi');
    const report = nvidiaSmiFixture(TESLA_K80);
    await fs.writeFile(command, `#!/bin/sh\nif [ "$*" = "-q -x" ]; then exec cat '${report}'; fi\n${onQuery}\n`, { mode: 0o755 });
    return command;
  }

  it.each([
    ['rejects -lms', 'echo "Invalid combination of input arguments." >&2; exit 2', /stopped without printing a line, twice/],
    ['never prints a line (buffered pipe)', 'exec sleep 600', /went silent without printing a line, twice/],
  ])('an nvidia-smi that %s is sampled with -q -x instead', async (_what, onQuery, said) => {
    const { log, entries } = recordingLog();
    const command = await brokenStreamNvidiaSmi(onQuery);
    const t = telemetry({ command, log, mode: 'stream', intervalMs: 100 });
    await expect.poll(async () => (await t.sample())[1]?.utilization_pct, { timeout: 8_000, interval: 100 }).toBe(99);
    expect(entries.find((e) => e.level === 'warn' && /sampling with -q -x instead/.test(e.msg))?.msg).toMatch(said);
  });
});
