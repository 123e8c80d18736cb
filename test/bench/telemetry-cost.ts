/**
 * Benchmark: what does one GPU sample cost the node, `nvidia-smi -q -x` per sample (poll) against
 * one long-lived `nvidia-smi --query-gpu=… --format=csv,noheader,nounits -lms N` (stream)?
 *
 * There is no GPU here, so it measures what can be measured honestly on this machine, through the
 * fake nvidia-smi (test/support/fake-nvidia-smi.ts: a shell script that cats a recorded report):
 *  - poll: spawn + wait + XML parse + mapping per sample, wall time and CPU (this process, and the
 *    child processes it waited for, from /proc/self/stat), for each recorded XML report;
 *  - the XML parse alone (node-nvidia-smi's xml2js + mapping), without the spawn;
 *  - stream: parsing one streamed CSV line (7 fields, and the 212-field H100 capture), and the
 *    node's CPU while a real stream (fake, -lms 100) feeds createGpuTelemetry.
 * It also prints the host sample's cost (systeminformation: memory, and df for the disk of cache_root).
 * What it cannot measure: the driver-side work of a real nvidia-smi (NVML queries per field per
 * GPU), which `-q -x` multiplies by every field it reports. That cost only adds to poll's side.
 *
 * Run: npm run build && node dist/test/bench/telemetry-cost.js [samples]
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createGpuTelemetry } from '../../daemon/telemetry/gpu-telemetry.js';
import { parseNvidiaSmiXml, queryNvidiaSmiXml } from '../../daemon/telemetry/nvidia-smi-xml.js';
import { createQueryGpuCsvReader, sampleFromQueryGpuRow } from '../../daemon/telemetry/query-gpu-csv.js';
import { createHostTelemetry } from '../../daemon/telemetry/host-telemetry.js';
import { silentLog } from '../../scheduler/common/log.js';
import { nvidiaSmiFixture, writeFakeNvidiaSmi } from '../support/fake-nvidia-smi.js';

const run = promisify(execFile);
const SAMPLES = Number(process.argv[2] ?? 200);
const REPORT_INTERVAL_MS = 2000; // node.yml's default report_interval_ms
const PROCESS_REFRESH_MS = 10_000; // createGpuTelemetry's default processRefreshMs

const XML_FIXTURES = [
  { file: 'openpai_2x-rtx-2080ti_drv410.73.xml', gpus: 2 },
  { file: 'openpai_4x-tesla-k80_drv430.26_processes.xml', gpus: 4 },
  { file: 'telegraf_rtx-4000-sff-ada_drv595.84_processes.xml', gpus: 1 },
  { file: 'telegraf_2x-rtx-a5000_drv590.44.01_processes.xml', gpus: 2 },
];

let clockTicks = 100;

// CPU time of the children this process has waited for (cutime + cstime), in ms.
function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); cutime and cstime are fields 16 and 17.
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / clockTicks;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

interface Cost {
  wallMs: number;
  selfCpuMs: number;
  childCpuMs: number;
}

async function measure(n: number, op: () => Promise<unknown> | unknown): Promise<Cost> {
  for (let i = 0; i < Math.min(20, n); i++) await op(); // warm-up: JIT, page cache
  const wall0 = performance.now();
  const self0 = selfCpuMs();
  const child0 = childCpuMs();
  for (let i = 0; i < n; i++) await op();
  return {
    wallMs: (performance.now() - wall0) / n,
    selfCpuMs: (selfCpuMs() - self0) / n,
    childCpuMs: (childCpuMs() - child0) / n,
  };
}

const f3 = (x: number) => x.toFixed(3);
const pctOfCore = (cpuMsPerReport: number) => `${((100 * cpuMsPerReport) / REPORT_INTERVAL_MS).toFixed(3)} %`;

async function main(): Promise<void> {
  clockTicks = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;
  const scratch = await mkdtemp(join(tmpdir(), 'secd-bench-telemetry-'));
  try {
    console.log(`telemetry cost: ${SAMPLES} samples per row, node ${process.version}, ${process.platform}/${process.arch}`);
    console.log('(cpu = this process; child cpu = the processes it spawned and waited for; per sample)');
    console.log('');

    const spawnOnly = await measure(SAMPLES, () => run('/bin/true'));
    console.log(`spawn /bin/true (baseline)              wall ${f3(spawnOnly.wallMs)} ms  cpu ${f3(spawnOnly.selfCpuMs)} ms  child cpu ${f3(spawnOnly.childCpuMs)} ms`);
    console.log('');

    console.log('poll: `nvidia-smi -q -x` per sample (fake script cats the report; spawn + parse + map)');
    const pollRows: Array<{ file: string; cost: Cost; parse: Cost; kb: number }> = [];
    for (const { file, gpus } of XML_FIXTURES) {
      const dir = join(scratch, file);
      const command = await writeFakeNvidiaSmi(dir, file);
      const xml = await readFile(nvidiaSmiFixture(file), 'utf8');
      const check = await queryNvidiaSmiXml(command, 10_000);
      if (!check.ok || check.gpus.length !== gpus) throw new Error(`${file}: ${JSON.stringify(check)}`);
      const cost = await measure(SAMPLES, () => queryNvidiaSmiXml(command, 10_000));
      const parse = await measure(SAMPLES, () => parseNvidiaSmiXml(xml));
      const kb = Buffer.byteLength(xml) / 1024;
      pollRows.push({ file, cost, parse, kb });
      console.log(
        `  ${file.padEnd(52)} ${gpus} GPU ${kb.toFixed(0).padStart(3)} KB  wall ${f3(cost.wallMs)} ms  cpu ${f3(cost.selfCpuMs)} ms  child cpu ${f3(cost.childCpuMs)} ms  (parse alone: cpu ${f3(parse.selfCpuMs)} ms)`,
      );
    }
    console.log('');

    console.log('stream: one `--query-gpu … -lms N` line per GPU per period');
    const reader = createQueryGpuCsvReader();
    const line = '1, GPU-c3b26f7a-8dcb-619c-fa1b-8029265a4db0, 99, 587, 11441, 64, 135.72';
    const LINES = SAMPLES * 1000;
    const lineCost = await measure(1, () => {
      for (let i = 0; i < LINES; i++) {
        const r = reader.read(line);
        if (r.kind !== 'row' || !sampleFromQueryGpuRow(r.row).ok) throw new Error('unparsed');
      }
    });
    const perLineUs = (lineCost.selfCpuMs * 1000) / LINES;
    const [h100Header, h100Line] = readFileSync(nvidiaSmiFixture('nvidia-gpu-exporter_h100-80gb-hbm3_drv590.48.01_query-gpu-load.csv'), 'utf8').split('\n');
    const wide = createQueryGpuCsvReader();
    wide.read(h100Header!);
    const WIDE = SAMPLES * 50;
    const wideCost = await measure(1, () => {
      for (let i = 0; i < WIDE; i++) if (wide.read(h100Line!).kind !== 'row') throw new Error('unparsed');
    });
    console.log(`  parse one 7-field line                 cpu ${f3(perLineUs)} µs`);
    console.log(`  parse one 212-field line (H100 csv)    cpu ${f3((wideCost.selfCpuMs * 1000) / WIDE)} µs`);

    // A running stream, end to end in this process: pipe, readline, parse, sample().
    const streamDir = join(scratch, 'stream');
    const command = await writeFakeNvidiaSmi(streamDir, 'openpai_4x-tesla-k80_drv430.26_processes.xml');
    const telemetry = createGpuTelemetry({ command, log: silentLog, mode: 'stream', intervalMs: 100, processRefreshMs: 3_600_000 });
    await telemetry.sample(); // starts the stream (and the one -q -x for processes)
    await new Promise((r) => setTimeout(r, 500));
    const seconds = 3;
    const self0 = selfCpuMs();
    const t0 = performance.now();
    let samples = 0;
    let sampleWall = 0;
    while (performance.now() - t0 < seconds * 1000) {
      const s0 = performance.now();
      const got = await telemetry.sample();
      sampleWall += performance.now() - s0;
      if (got.length !== 4 || got[1]?.utilization_pct !== 99) throw new Error('stream gave wrong values');
      samples++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const elapsed = performance.now() - t0;
    const streamCpu = selfCpuMs() - self0;
    telemetry.close();
    const ticks = elapsed / 100;
    const perTickMs = streamCpu / ticks;
    console.log(
      `  running stream, 4 GPUs, -lms 100, sample() every 100 ms: cpu ${f3(perTickMs)} ms per period (4 lines + 1 sample()), sample() wall ${f3(sampleWall / samples)} ms`,
    );
    console.log('');

    const hostEvery = await measure(Math.min(SAMPLES, 100), () => createHostTelemetry({ diskPath: scratch, diskRefreshMs: 0 }).sample());
    const hostCached = createHostTelemetry({ diskPath: scratch });
    const hostCachedCost = await measure(SAMPLES, () => hostCached.sample());
    console.log('host: load, CPUs, memory (systeminformation) and the disk of cache_root (df)');
    console.log(`  with df every sample                   wall ${f3(hostEvery.wallMs)} ms  cpu ${f3(hostEvery.selfCpuMs)} ms  child cpu ${f3(hostEvery.childCpuMs)} ms`);
    console.log(`  disk reused for 10 s (memory only)     wall ${f3(hostCachedCost.wallMs)} ms  cpu ${f3(hostCachedCost.selfCpuMs)} ms  child cpu ${f3(hostCachedCost.childCpuMs)} ms`);
    console.log('');

    const k80 = pollRows.find((r) => r.file.includes('k80'))!;
    const pollPerReport = k80.cost.selfCpuMs + k80.cost.childCpuMs;
    // Stream mode still runs -q -x for the process lists, once per processRefreshMs (default 10 s).
    const refreshShare = REPORT_INTERVAL_MS / PROCESS_REFRESH_MS;
    const streamPerReport = perTickMs + pollPerReport * refreshShare;
    console.log(`at report_interval_ms ${REPORT_INTERVAL_MS} on the 4-GPU K80 report:`);
    console.log(`  poll:   ${f3(pollPerReport)} ms cpu per report (${pctOfCore(pollPerReport)} of a core); sample() waits ${f3(k80.cost.wallMs)} ms`);
    console.log(
      `  stream: ${f3(streamPerReport)} ms cpu per report (${pctOfCore(streamPerReport)} of a core) = ${f3(perTickMs)} ms stream + -q -x every ${PROCESS_REFRESH_MS / 1000} s for processes; sample() waits ${f3(sampleWall / samples)} ms`,
    );
    console.log(`  poll / stream cpu: ${(pollPerReport / streamPerReport).toFixed(1)}x — before the driver work a real nvidia-smi adds to each -q -x (not measurable here)`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
