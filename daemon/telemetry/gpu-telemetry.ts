/**
 * NVIDIA GPU inventory and samples from `nvidia-smi`: the supervisor that runs its two readers.
 *
 * Two sources, chosen by measurement (test/bench/telemetry-cost.ts):
 * - `nvidia-smi -q -x` (nvidia-smi-xml.ts) gives everything (names, minor numbers, processes) but
 *   costs a process spawn plus a 13-92 KB XML parse per call, and on a real driver it queries every
 *   field of every GPU. It serves `inventory()` and, in the default `stream` mode, the process lists
 *   at a slower cadence (`processRefreshMs`, 10 s).
 * - one long-lived `nvidia-smi --query-gpu=… --format=csv,noheader,nounits -lms N` (read by
 *   query-gpu-csv.ts) prints one short line per GPU per period: no spawn per sample, microseconds per
 *   line. It serves the per-GPU numbers in `stream` mode; it is restarted (with backoff) whenever it
 *   dies or goes silent, and killed on `close()`. An nvidia-smi whose stream never prints a line
 *   (rejects -lms, or buffers a pipe) is detected after two starts and sampled with `-q -x` instead.
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
 * A missing nvidia-smi reads as zero GPUs, never as an error (see gpu-reading.ts for the
 * N/A-is-null rule of every value). One that fails (a non-zero exit: a GPU fallen off the bus makes
 * every call fail) keeps the last inventory, marked stale (`stale()`), each GPU its failure names
 * lost; a GPU gone from a later report stays listed as lost (gpu-inventory.ts). Where a report shows
 * a GPU in MIG mode, `nvidia-smi -L` names its MIG devices (nvidia-smi-list.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Log } from '../../scheduler/common/log.js';
import type { InventoryGpu } from '../../scheduler/contract/protocol.js';
import { firstLine, type GpuReading, type GpuSample, type NvidiaSmiFailure, type NvidiaSmiFailureCode } from './gpu-reading.js';
import { staleReadings, toInventory, withMigDevices, withMissingAsLost } from './gpu-inventory.js';
import { queryNvidiaSmiList } from './nvidia-smi-list.js';
import { queryNvidiaSmiXml, type XmlReadResult } from './nvidia-smi-xml.js';
import { createQueryGpuCsvReader, sampleFromQueryGpuRow, STREAM_QUERY_FIELDS } from './query-gpu-csv.js';

/** The node's view of its GPUs; never throws, a missing or broken nvidia-smi reads as zero GPUs. */
export interface GpuTelemetry {
  /** The GPUs as `hello` lists them, by minor number. */
  inventory(): Promise<InventoryGpu[]>;
  /** Each GPU's numbers and processes now. */
  sample(): Promise<GpuSample[]>;
  /** Since when, and why, the GPUs listed are the last inventory read rather than a fresh one; null while fresh. */
  stale(): { since: string; reason: string } | null;
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
  /** The clock (milliseconds) that ages the process lists and times a silent stream; default `Date.now`. */
  nowMs?: () => number;
}

function toSample({ name: _name, mig_mode: _mig, mig_devices: _devices, pci_bus_id: _bus, ...sample }: GpuReading): GpuSample {
  return sample;
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
  const nowMs = opts.nowMs ?? Date.now;
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
  // Every GPU a good report has shown (and since when one is missing): a GPU that vanishes is lost, not gone.
  const known = new Map<string, GpuReading>();
  const missingSince = new Map<string, string>();
  let staleness: { since: string; reason: string } | null = null;
  // The GPUs the last report stands for (see gpusAfter).
  let view: GpuReading[] = [];

  function refreshXml(): Promise<XmlReadResult> {
    if (!xmlInFlight) {
      xmlInFlight = queryNvidiaSmiXml(opts.command, timeoutMs).then(async (raw) => {
        let result = raw;
        if (result.ok && result.gpus.some((g) => g.mig_mode === true)) {
          const listed = await queryNvidiaSmiList(opts.command, timeoutMs);
          if (!listed.ok) log.warn({}, `${listed.reason}: MIG devices are not offered until it answers`);
          result = { ok: true, gpus: withMigDevices(result.gpus, listed.ok ? listed.migDevices : new Map()) };
        }
        xmlInFlight = null;
        lastXml = { at: nowMs(), result };
        view = gpusAfter(result);
        if (result.ok) xmlReport.success();
        else xmlReport.failure(result);
        return result;
      });
    }
    return xmlInFlight;
  }

  // The GPUs a report stands for: a good one plus the GPUs earlier ones had (lost); a garbled or
  // timed-out report keeps the previous inventory (the GPUs did not vanish because one answer was
  // unreadable); a failing nvidia-smi keeps it marked stale; only a missing command means none.
  function gpusAfter(result: XmlReadResult): GpuReading[] {
    const nowIso = new Date(nowMs()).toISOString();
    if (result.ok) {
      staleness = null;
      for (const g of result.gpus) {
        known.set(g.uuid, g);
        missingSince.delete(g.uuid);
      }
      const gpus = withMissingAsLost(result.gpus, known, (uuid) => {
        if (!missingSince.has(uuid)) missingSince.set(uuid, nowIso);
        return missingSince.get(uuid)!;
      });
      lastGood = { at: nowMs(), gpus };
      return gpus;
    }
    if (result.code === 'missing') {
      lastGood = null;
      known.clear();
      staleness = null;
      return [];
    }
    if (!lastGood) return [];
    if (result.code === 'failed') {
      staleness = { since: staleness?.since ?? nowIso, reason: result.reason };
      return staleReadings(lastGood.gpus, result.output ?? '', result.reason);
    }
    return lastGood.gpus;
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
      startedAt: nowMs(),
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
        const s = sampleFromQueryGpuRow(parsed.row, parsed.trouble);
        if (s.ok) {
          lastLineAt = nowMs();
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
      const silentMs = nowMs() - Math.max(lastLineAt, current.startedAt);
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
    if (lastXml && nowMs() - lastXml.at >= processRefreshMs) void refreshXml();
    if (!xml.ok && xml.code === 'missing') return [];
    const listed = view;

    ensureStream();
    const needsWait = listed.some((g) => (latest.get(g.uuid)?.at ?? 0) < streamStartedAt);
    if (needsWait && stream) await waitForLines(listed.map((g) => g.uuid));
    if (pollFallback) {
      await refreshXml();
      return view.map(toSample);
    }

    const now = nowMs();
    const bySeen = new Map<string, GpuSample>();
    for (const [uuid, entry] of latest) {
      if (now - entry.at <= staleAfterMs) bySeen.set(uuid, entry.sample);
      else latest.delete(uuid);
    }
    const samples: GpuSample[] = listed.map((g) => {
      const s = bySeen.get(g.uuid);
      bySeen.delete(g.uuid);
      // A GPU the report calls lost or in error, or whose stream line says so, is not read from the stream.
      const trouble = g.health === 'lost' || g.health === 'error' ? g : s?.health === 'lost' || s?.health === 'error' ? s : null;
      if (trouble) return { ...toSample(g), health: trouble.health, problem: trouble.problem ?? null, processes: g.processes };
      return {
        uuid: g.uuid,
        // The index is the minor number, as in inventory(); the stream's own index can differ.
        index: g.index,
        utilization_pct: s ? s.utilization_pct : null,
        memory_used_bytes: s ? s.memory_used_bytes : null,
        memory_total_bytes: s?.memory_total_bytes ?? g.memory_total_bytes,
        temperature_c: s ? s.temperature_c : null,
        power_w: s ? s.power_w : null,
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
      await refreshXml();
      return view.map(toInventory);
    },
    async sample() {
      if (closed) return [];
      if (mode === 'poll' || pollFallback) {
        await refreshXml();
        return view.map(toSample);
      }
      return sampleStream();
    },
    stale() {
      return staleness;
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
