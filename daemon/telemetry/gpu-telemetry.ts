/**
 * NVIDIA GPU inventory and samples from `nvidia-smi`: the only file that uses node-nvidia-smi.
 *
 * Two sources, chosen by measurement (test/bench/telemetry-cost.ts):
 * - `nvidia-smi -q -x` gives everything (names, minor numbers, processes) but costs a process spawn
 *   plus a 13-92 KB XML parse per call, and on a real driver it queries every field of every GPU.
 *   It serves `inventory()` and, in the default `stream` mode, the process lists at a slower
 *   cadence (`processRefreshMs`, 10 s).
 * - one long-lived `nvidia-smi --query-gpu=… --format=csv,noheader,nounits -lms N` prints one short
 *   line per GPU per period: no spawn per sample, microseconds per line. It serves the per-GPU
 *   numbers in `stream` mode; it is restarted (with backoff) whenever it dies or goes silent, and
 *   killed on `close()`. An nvidia-smi whose stream never prints a line (rejects -lms, or buffers a
 *   pipe) is detected after two starts and sampled with `-q -x` instead.
 * Figures on this project's 2-core CI VM (shared, load 5-8), fake nvidia-smi catting a recorded
 * report, so without the driver's own work: `-q -x` per sample on the 4-GPU K80 report costs
 * 8-12 ms CPU in node (xml2js alone ~5 ms) + ~3 ms in the spawned process, 14-22 ms wall; the 92 KB
 * A5000 report 13-19 ms CPU. A streamed 7-field line parses in ~3 µs; a running 4-GPU stream costs
 * < 1 ms CPU per period including sample(), which returns in 0.1 ms. At a 2 s report that is
 * ~10.5 ms CPU per report for poll against ~2.9 ms for stream (the 10-second -q -x included):
 * 3.6x less, before the driver side, where public figures (netdata issue #10362, 1 GPU) put
 * `nvidia-smi -x -q` at 388 ms wall against 7 ms for a `--query-gpu` run. Hence `stream` by default;
 * `poll` (one `-q -x` per sample) stays available.
 *
 * node-nvidia-smi 1.0 fits only half-way: its one function runs the fixed string
 * `nvidia-smi -q -x` through a shell, with no way to name the command (`nvidia_smi:` in node.yml),
 * no timeout, and it treats any stderr output as failure. So this module runs the command itself
 * (execFile, no shell, timeout) and parses the XML exactly as node-nvidia-smi does: with the xml2js
 * that node-nvidia-smi depends on (pinned to 0.6.2 by npm `overrides`), resolved from
 * node-nvidia-smi's own folder, with node-nvidia-smi's parser options. The JSON shape read below is
 * therefore node-nvidia-smi's output shape; a test feeds its CLI's output through the same mapping.
 *
 * Values the hardware reports as `N/A`, `[N/A]`, `[Not Supported]`, "Requested functionality has
 * been deprecated" (or anything else that is not a number) become `null`, never 0 and never an error.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import type { Log } from '../../scheduler/common/log.js';

/** One GPU as the node announces it in `hello`. */
export interface GpuInfo {
  uuid: string;
  /** nvidia-smi's `minor_number` (/dev/nvidiaN); GPUs are listed in this order. */
  index: number;
  name: string;
  memoryTotalBytes: number | null;
}

/** A process holding memory on a GPU (secd's own containers or anything else). */
export interface GpuProcess {
  pid: number;
  name: string;
  usedMemoryBytes: number | null;
}

/** One GPU's state at one moment; `null` = the hardware or driver did not say. */
export interface GpuSample {
  uuid: string;
  index: number;
  utilizationPct: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  temperatureC: number | null;
  powerW: number | null;
  processes: GpuProcess[];
}

/** The node's view of its GPUs; never throws, a missing or broken nvidia-smi reads as zero GPUs. */
export interface GpuTelemetry {
  inventory(): Promise<GpuInfo[]>;
  sample(): Promise<GpuSample[]>;
  close(): void;
}

/** `stream`: long-lived `--query-gpu … -lms` for numbers, `-q -x` for processes; `poll`: `-q -x` per sample. */
export type GpuSamplingMode = 'stream' | 'poll';

/** What `createGpuTelemetry` needs. */
export interface GpuTelemetryOptions {
  /** The nvidia-smi executable (name on PATH or a path). */
  command: string;
  log: Log;
  /** Default `stream`: see the module comment for the measurement behind it. */
  mode?: GpuSamplingMode;
  /** Period of the long-lived stream (`-lms`), default 1000 ms. */
  intervalMs?: number;
  /** How old the process lists (from `-q -x`) may get in stream mode, default 10 s. */
  processRefreshMs?: number;
  /** Limit for one `-q -x` run, default 10 s. */
  timeoutMs?: number;
}

/** The columns the long-lived stream asks for, in this order. */
export const STREAM_QUERY_FIELDS = [
  'index',
  'uuid',
  'utilization.gpu',
  'memory.used',
  'memory.total',
  'temperature.gpu',
  'power.draw',
] as const;

const MIB = 1024 * 1024;

/** Why one nvidia-smi call gave no usable answer. */
export type NvidiaSmiFailureCode = 'missing' | 'failed' | 'timeout' | 'invalid-output';

/** An expected failure of nvidia-smi: a stable code and one line for the operator. */
export interface NvidiaSmiFailure {
  ok: false;
  code: NvidiaSmiFailureCode;
  reason: string;
}

/** Everything one `-q -x` report says about one GPU. */
export interface GpuReading extends GpuSample {
  name: string;
}

/** The outcome of reading one `-q -x` report. */
export type XmlReadResult = { ok: true; gpus: GpuReading[] } | NvidiaSmiFailure;

// ---------------------------------------------------------------------------------------------
// Values

// Tokens nvidia-smi prints instead of a value, with or without square brackets.
const UNKNOWN_VALUES = new Set([
  '',
  'n/a',
  'not supported',
  'requested functionality has been deprecated',
  'unknown error',
  'insufficient permissions',
  'gpu requires reset',
  'gpu is lost',
  'not found',
  'not available',
]);

function unbracket(text: string): string {
  const t = text.trim();
  return t.startsWith('[') && t.endsWith(']') ? t.slice(1, -1).trim() : t;
}

/** A value as nvidia-smi printed it, or null when it is one of its "unknown" tokens. */
function knownText(text: string | undefined): string | null {
  if (text === undefined) return null;
  return UNKNOWN_VALUES.has(unbracket(text).toLowerCase()) ? null : text.trim();
}

/** "99 %", "135.72 W", "11441 MiB", "64 C", "59" → the number; anything else (N/A…) → null. */
function numberOf(text: string | undefined): number | null {
  const t = knownText(text);
  if (t === null) return null;
  const m = /^(-?\d+(?:\.\d+)?)(?:\s*[A-Za-z%]+)?$/.exec(t);
  return m ? Number(m[1]) : null;
}

function bytesFromMiB(text: string | undefined): number | null {
  const mib = numberOf(text);
  return mib === null ? null : Math.round(mib * MIB);
}

function integerOf(text: string | undefined): number | null {
  const n = numberOf(text);
  return n !== null && Number.isInteger(n) && n >= 0 ? n : null;
}

// ---------------------------------------------------------------------------------------------
// `nvidia-smi -q -x` through node-nvidia-smi's parser

type ParseString = (
  xml: string,
  options: object,
  callback: (err: Error | null, result: unknown) => void,
) => void;

// The xml2js node-nvidia-smi itself requires (see the module comment), and its options verbatim.
const nodeNvidiaSmiEntry = createRequire(import.meta.url).resolve('node-nvidia-smi');
const { parseString } = createRequire(nodeNvidiaSmiEntry)('xml2js') as { parseString: ParseString };
const NODE_NVIDIA_SMI_XML_OPTIONS = { explicitArray: false, trim: true };

// xml2js with explicitArray:false gives an element's text as a string, an element with attributes
// as { _: text, $: attrs }, a repeated element as an array and an empty element as a string of
// whitespace ('' or the newline and tabs between its tags: trim does not apply to those).
const emptyElement = z.string().regex(/^\s*$/);
const xmlText = z
  .union([z.string(), z.object({ _: z.string().optional() }).transform((o) => o._ ?? '')])
  .optional();
const xmlGroup = <T extends z.ZodRawShape>(shape: T) =>
  z.union([z.object(shape), emptyElement.transform(() => undefined)]).optional();
const oneOrMany = <T extends z.ZodType>(item: T) =>
  z
    .union([z.array(item), item])
    .optional()
    .transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]));

const processInfoXml = z.object({
  pid: xmlText,
  process_name: xmlText,
  used_memory: xmlText,
});

const powerXml = {
  power_draw: xmlText,
  average_power_draw: xmlText,
  instant_power_draw: xmlText,
};

const gpuXml = z.object({
  product_name: xmlText,
  uuid: z.string().min(1),
  minor_number: xmlText,
  fb_memory_usage: xmlGroup({ total: xmlText, used: xmlText }),
  utilization: xmlGroup({ gpu_util: xmlText }),
  temperature: xmlGroup({ gpu_temp: xmlText }),
  // DTD v10-v12: <power_readings>; v13: <gpu_power_readings> (plus memory/module readings we skip).
  power_readings: xmlGroup(powerXml),
  gpu_power_readings: xmlGroup(powerXml),
  processes: z
    .union([emptyElement.transform(() => undefined), z.object({ process_info: oneOrMany(processInfoXml) })])
    .optional()
    .transform((p) => (p === undefined ? [] : p.process_info)),
});

const nvidiaSmiLogXml = z.object({
  nvidia_smi_log: z.union([
    emptyElement.transform(() => ({ gpu: [] as z.infer<typeof gpuXml>[] })),
    z.object({ gpu: oneOrMany(gpuXml) }),
  ]),
});

type PowerXml = { power_draw?: string; average_power_draw?: string; instant_power_draw?: string } | undefined;

// A board's draw: `power_draw` on older drivers; on DTD v13 the one-second average, which is what
// `--query-gpu=power.draw` reports (the H100 capture shows power.draw == power.draw.average).
function powerOf(readings: PowerXml): number | null {
  if (!readings) return null;
  return numberOf(readings.power_draw) ?? numberOf(readings.average_power_draw) ?? numberOf(readings.instant_power_draw);
}

function zodReason(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'unexpected structure';
  return `${issue.path.join('.') || '(root)'}: ${issue.message}`;
}

/** Maps node-nvidia-smi's JSON (xml2js, explicitArray false) to readings sorted by index. */
export function readingsFromNodeNvidiaSmiJson(json: unknown): XmlReadResult {
  const parsed = nvidiaSmiLogXml.safeParse(json);
  if (!parsed.success) {
    return { ok: false, code: 'invalid-output', reason: `nvidia-smi XML is not an nvidia_smi_log report (${zodReason(parsed.error)})` };
  }
  const gpus = parsed.data.nvidia_smi_log.gpu.map((g, position): GpuReading => {
    const memoryTotalBytes = bytesFromMiB(g.fb_memory_usage?.total);
    return {
      uuid: g.uuid,
      // A minor number of N/A (seen on some virtualised platforms) falls back to document order.
      index: integerOf(g.minor_number) ?? position,
      name: knownText(g.product_name) ?? 'unknown GPU',
      memoryTotalBytes,
      memoryUsedBytes: bytesFromMiB(g.fb_memory_usage?.used),
      utilizationPct: numberOf(g.utilization?.gpu_util),
      temperatureC: numberOf(g.temperature?.gpu_temp),
      powerW: powerOf(g.power_readings ?? g.gpu_power_readings),
      processes: g.processes.flatMap((p): GpuProcess[] => {
        const pid = integerOf(p.pid);
        return pid === null ? [] : [{ pid, name: knownText(p.process_name) ?? '', usedMemoryBytes: bytesFromMiB(p.used_memory) }];
      }),
    };
  });
  gpus.sort((a, b) => a.index - b.index);
  return { ok: true, gpus };
}

/** Parses `nvidia-smi -q -x` output the way node-nvidia-smi does and maps it to readings. */
export function parseNvidiaSmiXml(xml: string): Promise<XmlReadResult> {
  return new Promise((resolve) => {
    parseString(xml, NODE_NVIDIA_SMI_XML_OPTIONS, (err, json) => {
      if (err) {
        const first = String(err.message).split('\n')[0];
        resolve({ ok: false, code: 'invalid-output', reason: `nvidia-smi -q -x printed something that is not XML (${first})` });
      } else if (json === null || json === undefined) {
        resolve({ ok: false, code: 'invalid-output', reason: 'nvidia-smi -q -x printed nothing' });
      } else {
        resolve(readingsFromNodeNvidiaSmiJson(json));
      }
    });
  });
}

function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? ''
  ).slice(0, 200);
}

/** Runs `<command> -q -x` once (no shell, with a timeout) and reads its report. */
export function queryNvidiaSmiXml(command: string, timeoutMs: number): Promise<XmlReadResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      ['-q', '-x'],
      { timeout: timeoutMs, maxBuffer: 64 * MIB, encoding: 'utf8', windowsHide: true },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown };
          if (e.code === 'ENOENT') {
            resolve({ ok: false, code: 'missing', reason: `${command} not found` });
          } else if (e.killed && e.signal) {
            resolve({ ok: false, code: 'timeout', reason: `${command} -q -x did not answer within ${timeoutMs} ms` });
          } else {
            // nvidia-smi prints its own failure ("couldn't communicate with the NVIDIA driver") on stdout.
            const said = firstLine(String(stdout)) || firstLine(String(stderr)) || e.message;
            const status = typeof e.code === 'number' ? `exit code ${e.code}` : String(e.code ?? e.signal ?? 'error');
            resolve({ ok: false, code: 'failed', reason: `${command} -q -x failed (${status}): ${said}` });
          }
          return;
        }
        void parseNvidiaSmiXml(String(stdout)).then(resolve);
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// `--query-gpu` CSV

/** One data line of `--query-gpu` CSV: field name (units stripped) → value, null when unknown. */
export type QueryGpuRow = Record<string, string | null>;

/** What one CSV line was. */
export type QueryGpuLine =
  | { kind: 'blank' }
  | { kind: 'header'; fields: string[] }
  | { kind: 'row'; row: QueryGpuRow }
  | { kind: 'invalid'; reason: string };

// "memory.total [MiB]" → "memory.total"
function fieldName(header: string): string {
  return header.trim().replace(/\s*\[[^\]]*\]$/, '');
}

const HEADER_CELL = /^[A-Za-z_][\w.]*(\s*\[[^\]]*\])?$/;

/**
 * Reads `--query-gpu` CSV one line at a time. Columns come from a header line when the output has
 * one (`--format=csv`: the 212-field H100 capture) and otherwise from the requested fields, so a
 * caller looks values up by field name either way.
 */
export function createQueryGpuCsvReader(fields: readonly string[] = STREAM_QUERY_FIELDS): {
  read(line: string): QueryGpuLine;
} {
  let columns = fields.map(fieldName);
  return {
    read(line) {
      const text = line.replace(/\r$/, '');
      if (text.trim() === '') return { kind: 'blank' };
      // nvidia-smi separates with ", "; no value it prints for the fields we use contains a comma.
      const cells = text.split(',').map((c) => c.trim());
      if (cells.every((c) => HEADER_CELL.test(c)) && cells.map(fieldName).some((c) => c === 'uuid' || c === 'index')) {
        columns = cells.map(fieldName);
        return { kind: 'header', fields: columns };
      }
      if (cells.length !== columns.length) {
        return { kind: 'invalid', reason: `expected ${columns.length} comma-separated values, got ${cells.length}: ${text.slice(0, 120)}` };
      }
      const row: QueryGpuRow = {};
      columns.forEach((name, i) => {
        row[name] = knownText(cells[i]);
      });
      return { kind: 'row', row };
    },
  };
}

/** One GPU's numbers from a `--query-gpu` row (units in the values, if any, are ignored). */
export function sampleFromQueryGpuRow(row: QueryGpuRow): { ok: true; sample: GpuSample } | { ok: false; reason: string } {
  const uuid = row['uuid'];
  const index = integerOf(row['index'] ?? undefined);
  if (!uuid || !/^(GPU|MIG)-/.test(uuid)) return { ok: false, reason: `row has no GPU uuid (got ${JSON.stringify(uuid ?? null)})` };
  if (index === null) return { ok: false, reason: `row for ${uuid} has no index` };
  const v = (name: string) => row[name] ?? undefined;
  return {
    ok: true,
    sample: {
      uuid,
      index,
      utilizationPct: numberOf(v('utilization.gpu')),
      memoryUsedBytes: bytesFromMiB(v('memory.used')),
      memoryTotalBytes: bytesFromMiB(v('memory.total')),
      temperatureC: numberOf(v('temperature.gpu')),
      powerW: numberOf(v('power.draw')),
      processes: [],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The telemetry

function toInfo(g: GpuReading): GpuInfo {
  return { uuid: g.uuid, index: g.index, name: g.name, memoryTotalBytes: g.memoryTotalBytes };
}

function toSample(g: GpuReading): GpuSample {
  return {
    uuid: g.uuid,
    index: g.index,
    utilizationPct: g.utilizationPct,
    memoryUsedBytes: g.memoryUsedBytes,
    memoryTotalBytes: g.memoryTotalBytes,
    temperatureC: g.temperatureC,
    powerW: g.powerW,
    processes: g.processes,
  };
}

// Logs a failure when it starts (or changes), not on every sample, and says when it is over.
function failureReporter(log: Log): { failure(f: NvidiaSmiFailure): void; success(): void } {
  let reported: NvidiaSmiFailureCode | null = null;
  return {
    failure(f) {
      if (reported === f.code) return;
      reported = f.code;
      if (f.code === 'missing') log.warn({ code: f.code }, `${f.reason}: this node reports zero GPUs`);
      else log.error({ code: f.code }, f.reason);
    },
    success() {
      if (reported !== null) log.info({ was: reported }, 'nvidia-smi answers again');
      reported = null;
    },
  };
}

/** Starts GPU telemetry over `command`; nothing is spawned until the first call. */
export function createGpuTelemetry(opts: GpuTelemetryOptions): GpuTelemetry {
  const mode = opts.mode ?? 'stream';
  const intervalMs = Math.max(50, Math.round(opts.intervalMs ?? 1000));
  const processRefreshMs = opts.processRefreshMs ?? 10_000;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const log = opts.log.child({ component: 'gpu-telemetry', command: opts.command });
  // A stream value older than this is unknown rather than stale; a stream silent this long is restarted.
  const staleAfterMs = Math.max(1_000, 5 * intervalMs);
  // How long the first stream sample waits for the stream's first lines.
  const firstLinesWaitMs = Math.min(3_000, Math.max(1_000, 2 * intervalMs));

  let closed = false;
  const xmlReport = failureReporter(log);
  const streamReport = failureReporter(log);

  // --- `-q -x`, single-flight, remembering the last good report
  let xmlInFlight: Promise<XmlReadResult> | null = null;
  let lastGood: { at: number; gpus: GpuReading[] } | null = null;
  let lastXml: { at: number; result: XmlReadResult } | null = null;

  function refreshXml(): Promise<XmlReadResult> {
    if (!xmlInFlight) {
      xmlInFlight = queryNvidiaSmiXml(opts.command, timeoutMs).then((result) => {
        xmlInFlight = null;
        lastXml = { at: Date.now(), result };
        if (result.ok) {
          lastGood = { at: lastXml.at, gpus: result.gpus };
          xmlReport.success();
        } else {
          // A driver that is gone says "missing"/"failed": the last good inventory would lie.
          if (result.code === 'missing') lastGood = null;
          xmlReport.failure(result);
        }
        return result;
      });
    }
    return xmlInFlight;
  }

  // The GPUs a report stands for: a garbled or timed-out report keeps the previous inventory
  // (the GPUs did not vanish because one answer was unreadable); a missing command means none.
  function gpusAfter(result: XmlReadResult): GpuReading[] {
    if (result.ok) return result.gpus;
    if (result.code === 'invalid-output' || result.code === 'timeout') return lastGood?.gpus ?? [];
    return [];
  }

  // --- the long-lived `--query-gpu … -lms` stream
  interface Stream {
    child: ChildProcess;
    startedAt: number;
    delivered: boolean;
    /** Forget this stream (once): kill it if asked, then restart it or fall back to polling. */
    end(why: string, details: object, opts: { kill: boolean; missing?: boolean }): void;
  }
  let stream: Stream | null = null;
  let streamStartedAt = 0;
  let restartTimer: NodeJS.Timeout | null = null;
  let consecutiveFailures = 0;
  let lastLineAt = 0;
  let everDelivered = false;
  let fruitlessStarts = 0;
  // Set when the stream never printed a line in two starts while -q -x works (an nvidia-smi that
  // rejects -lms, or buffers a pipe's output): sampling goes on with -q -x, slower but correct.
  let pollFallback = false;
  const latest = new Map<string, { sample: GpuSample; at: number }>();
  let lineWaiters: Array<() => void> = [];

  function wakeWaiters(): void {
    const waiters = lineWaiters;
    lineWaiters = [];
    for (const w of waiters) w();
  }

  function killGroup(child: ChildProcess): void {
    if (child.pid === undefined) return;
    try {
      // The stream runs in its own process group so that helpers it started die with it.
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      try {
        child.kill('SIGTERM');
      } catch {
        // already gone
      }
    }
  }

  function afterStreamEnded(why: string, details: object, delivered: boolean): void {
    if (!everDelivered && !delivered) fruitlessStarts += 1;
    if (!everDelivered && fruitlessStarts >= 2 && lastGood !== null) {
      pollFallback = true;
      log.warn({ ...details }, `nvidia-smi --query-gpu -lms ${why} without printing a line, twice; sampling with -q -x instead`);
      return;
    }
    consecutiveFailures += 1;
    const delay = Math.min(30_000, 250 * 2 ** Math.min(consecutiveFailures - 1, 7));
    log.warn({ ...details, restart_in_ms: delay }, `nvidia-smi stream ${why}; restarting it`);
    restartTimer = setTimeout(() => {
      restartTimer = null;
      startStream();
    }, delay);
    restartTimer.unref();
  }

  function startStream(): void {
    if (closed || pollFallback || stream || restartTimer) return;
    const args = [`--query-gpu=${STREAM_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits', '-lms', String(intervalMs)];
    const child = spawn(opts.command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, windowsHide: true });
    const reader = createQueryGpuCsvReader();
    let stderrTail = '';
    let ended = false;
    const self: Stream = {
      child,
      startedAt: Date.now(),
      delivered: false,
      end(why, details, { kill, missing = false }) {
        if (ended) return;
        ended = true;
        if (stream === self) stream = null;
        if (kill) killGroup(child);
        wakeWaiters();
        // A missing command is reported (once) by the -q -x path; nothing to restart until it exists.
        if (closed || missing) return;
        afterStreamEnded(why, { ...details, stderr: firstLine(stderrTail) || undefined }, self.delivered);
      },
    };
    stream = self;
    streamStartedAt = self.startedAt;
    child.on('error', (err: NodeJS.ErrnoException) => {
      self.end('could not start', { error: err.message }, { kill: false, missing: err.code === 'ENOENT' });
    });
    child.on('exit', (code, signal) => self.end('stopped', { exit_code: code, signal }, { kill: false }));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-2000);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = reader.read(line);
      if (parsed.kind === 'row') {
        const s = sampleFromQueryGpuRow(parsed.row);
        if (s.ok) {
          lastLineAt = Date.now();
          latest.set(s.sample.uuid, { sample: s.sample, at: lastLineAt });
          self.delivered = true;
          everDelivered = true;
          consecutiveFailures = 0;
          streamReport.success();
          wakeWaiters();
          return;
        }
        streamReport.failure({ ok: false, code: 'invalid-output', reason: `nvidia-smi --query-gpu printed an unusable line (${s.reason})` });
      } else if (parsed.kind === 'invalid') {
        streamReport.failure({ ok: false, code: 'invalid-output', reason: `nvidia-smi --query-gpu printed an unusable line (${parsed.reason})` });
      }
    });
  }

  function ensureStream(): void {
    if (closed || pollFallback) return;
    const current = stream;
    if (current) {
      const silentMs = Date.now() - Math.max(lastLineAt, current.startedAt);
      // Alive but silent (a GPU fallen off the bus can hang nvidia-smi): replace it.
      if (silentMs > staleAfterMs) current.end('went silent', { silent_ms: silentMs }, { kill: true });
      return;
    }
    startStream();
  }

  // Waits until the stream has a fresh line for each of `uuids`, or the wait runs out.
  async function waitForLines(uuids: string[]): Promise<void> {
    const fresh = () => uuids.every((u) => (latest.get(u)?.at ?? 0) >= streamStartedAt);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      wakeWaiters();
    }, firstLinesWaitMs);
    timer.unref();
    try {
      while (!fresh() && !timedOut && !closed && !pollFallback && stream) {
        await new Promise<void>((r) => lineWaiters.push(r));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async function sampleStream(): Promise<GpuSample[]> {
    // Processes (and the GPU list) come from -q -x, refreshed in the background once stale.
    const xml = lastXml ? lastXml.result : await refreshXml();
    if (lastXml && Date.now() - lastXml.at >= processRefreshMs) void refreshXml();
    if (!xml.ok && xml.code === 'missing') return [];
    const listed = gpusAfter(xml);

    ensureStream();
    const needsWait = listed.some((g) => (latest.get(g.uuid)?.at ?? 0) < streamStartedAt);
    if (needsWait && stream) await waitForLines(listed.map((g) => g.uuid));
    if (pollFallback) return gpusAfter(await refreshXml()).map(toSample);

    const now = Date.now();
    const bySeen = new Map<string, GpuSample>();
    for (const [uuid, entry] of latest) {
      if (now - entry.at <= staleAfterMs) bySeen.set(uuid, entry.sample);
      else latest.delete(uuid);
    }
    const samples: GpuSample[] = listed.map((g) => {
      const s = bySeen.get(g.uuid);
      bySeen.delete(g.uuid);
      return {
        uuid: g.uuid,
        // The index is the minor number, as in inventory(); the stream's own index can differ.
        index: g.index,
        utilizationPct: s ? s.utilizationPct : null,
        memoryUsedBytes: s ? s.memoryUsedBytes : null,
        memoryTotalBytes: s?.memoryTotalBytes ?? g.memoryTotalBytes,
        temperatureC: s ? s.temperatureC : null,
        powerW: s ? s.powerW : null,
        processes: g.processes,
      };
    });
    // A GPU the stream sees but the last -q -x did not (it failed, or the GPU just appeared).
    for (const s of bySeen.values()) samples.push({ ...s, processes: [] });
    samples.sort((a, b) => a.index - b.index);
    return samples;
  }

  return {
    async inventory() {
      if (closed) return [];
      return gpusAfter(await refreshXml()).map(toInfo);
    },
    async sample() {
      if (closed) return [];
      if (mode === 'poll' || pollFallback) return gpusAfter(await refreshXml()).map(toSample);
      return sampleStream();
    },
    close() {
      closed = true;
      if (restartTimer) clearTimeout(restartTimer);
      restartTimer = null;
      stream?.end('closed', {}, { kill: true });
      wakeWaiters();
    },
  };
}
