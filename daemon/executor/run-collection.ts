/**
 * Reading an ended run container back: its /outputs collected through the engine into the run's
 * folder (bounded in bytes, time and the node's disk, with the disclosure checks on every file as it
 * streams), its end put into the researcher's words, and the log captures of one run. Collecting is
 * repeatable: it starts from an empty folder each time, so a node restarted before the end was
 * journaled collects the same container again.
 */
import { rm, statfs } from 'node:fs/promises';
import type { ContainerRunResult } from '../engine/container-engine.js';
import { OUTPUTS_MOUNT } from './container-profile.js';
import type { ExecutorDeps, ExecutorSettings } from './executor-deps.js';
import { LogCapture } from './log-capture.js';
import type { RunWorkspace } from './run-workspace.js';
import { extractOutputsArchive, readLimitOf } from '../results/outputs-archive.js';
import type { OutputsCaps } from '../results/outputs-copy.js';
import { ThreadedScanner } from '../results/threaded-scanner.js';
import { isReservedForResults } from '../results/results-branch.js';
import { DEFAULT_DISCLOSURE_CHECKS, type DisclosureChecks, type DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import type { LeftOut, RunEnd, RunSpec } from '../../scheduler/contract/run-spec.js';

/** What collecting a container's /outputs gave: what was left out, and what the checks flagged in the rest. */
export interface CollectedOutputs {
  leftOut: LeftOut[];
  disclosure: DisclosureFinding[];
  /** Collection stopped early: why, and whether that fails the run (the node's disk) or only says so. */
  stopped?: { reason: string; fails: boolean };
}

/**
 * Node settings of the bounds on a run's disk and collection time; absent keys take the defaults below.
 * (Meant as ExecutorSettings fields, from node.yml `disk_watermark_bytes`.)
 */
export interface RunBoundsSettings {
  /** Free bytes the filesystem of work_dir must keep: under it no run starts and a collection stops. */
  diskWatermarkBytes?: number;
}

const GiB = 2 ** 30;
/** Room for the node's own journal, logs and git work on top of any one run's outputs. */
export const DEFAULT_DISK_WATERMARK_BYTES = 2 * GiB;
/**
 * Collection's pace floor: the engine streams an archive at hundreds of MB/s here (two 8 GiB sparse
 * files took 73-106 s), so a read bound at 16 MiB/s, plus a minute for the checks, is generous to a
 * slow disk yet ends a stalled stream.
 */
const COLLECT_BYTES_PER_MS = (16 * 2 ** 20) / 1000;
/** A run that was cancelled before collection gets this long: small outputs still come back, promptly. */
export const CANCELLED_COLLECT_MS = 10_000;
/** How often the node's free space is checked while collecting. */
const DISK_CHECK_MS = 1000;

/** How long collecting a run's /outputs may take under `caps`: a minute plus the read bound at 16 MiB/s. */
export function collectDeadlineMs(caps: OutputsCaps): number {
  return 60_000 + Math.ceil(readLimitOf(caps) / COLLECT_BYTES_PER_MS);
}

/** Bytes as reasons give them: GiB or MiB to three digits. */
export function formatBytes(n: number): string {
  return n >= GiB ? `${Number((n / GiB).toPrecision(3))} GiB` : `${Number((n / 2 ** 20).toPrecision(3))} MiB`;
}

/**
 * Why this node must not start or go on collecting a run (the filesystem of work_dir has less free
 * space than the watermark), or null. A filesystem that cannot be asked is not held against the run.
 */
export async function diskWatermarkReason(settings: ExecutorSettings & RunBoundsSettings): Promise<string | null> {
  const watermark = settings.diskWatermarkBytes ?? DEFAULT_DISK_WATERMARK_BYTES;
  if (watermark <= 0) return null;
  const fs = await statfs(settings.workDir).catch(() => null);
  if (fs === null) return null;
  const free = fs.bavail * fs.bsize;
  if (free >= watermark) return null;
  return `node ${settings.nodeId} has ${formatBytes(free)} free in ${settings.workDir}, under its disk watermark of ${formatBytes(watermark)}`;
}

/** The run's end and reason once collection said how it went: a full disk fails the run, a deadline is told. */
export function withCollection(ended: { end: RunEnd; reason: string }, outputs: CollectedOutputs | null): { end: RunEnd; reason: string } {
  const stopped = outputs?.stopped;
  if (!stopped) return ended;
  if (stopped.fails) return { end: 'failed', reason: `${stopped.reason} (the run had ${ended.end === 'succeeded' ? 'succeeded' : `ended: ${ended.reason}`})` };
  return { end: ended.end, reason: `${ended.reason}; ${stopped.reason}` };
}


/** The build and run log captures of one run, each holding its head and tail within the cap. */
export function newLogCaptures(settings: ExecutorSettings): { buildLog: LogCapture; runLog: LogCapture } {
  const half = Math.max(1024, Math.floor(settings.maxLogBytes / 2));
  return { buildLog: new LogCapture({ headBytes: half, tailBytes: half }), runLog: new LogCapture({ headBytes: half, tailBytes: half }) };
}

/** The run's end and the reason a researcher reads, from how its container ended. */
export function describeContainerEnd(result: ContainerRunResult, spec: RunSpec, signal: AbortSignal | undefined): { end: RunEnd; reason: string } {
  switch (result.end) {
    case 'exited':
      return result.exitCode === 0
        ? { end: 'succeeded', reason: 'succeeded' }
        : {
            end: 'failed',
            reason: `the container exited with code ${result.exitCode}${result.oomKilled ? ' (killed: out of memory)' : ''}`,
          };
    case 'timed_out':
      return { end: 'timed_out', reason: `stopped at its runfor limit of ${formatHours(spec.runforMs)}` };
    case 'cancelled':
      return { end: 'cancelled', reason: cancelReasonOf(signal) };
    case 'start_failed':
      return { end: 'failed', reason: `the container could not start: ${result.reason ?? 'unknown error'}` };
  }
}

/** The reason a cancelled run gives: the abort's own (`signal.reason`, a sentence), or "cancelled". */
export function cancelReasonOf(signal: AbortSignal | undefined): string {
  return typeof signal?.reason === 'string' ? signal.reason : 'cancelled';
}

/** The checks a run's outputs and logs get: its leader's, or the defaults (`secd run`, an older leader). */
export function disclosureChecksOf(spec: RunSpec): DisclosureChecks {
  return spec.release?.checks ?? DEFAULT_DISCLOSURE_CHECKS;
}


/**
 * Read an ended container's /outputs through the engine into the run's folder, before the container
 * goes: the node owns every file it writes there, whatever user and modes the container used. The
 * disclosure checks read each file as it streams to disk, so no output is read twice. A failure is
 * listed (the run's outputs are `unreadable`), never thrown: the logs are still delivered.
 *
 * Bounded: the read stops at the archive's read bound (outputs-archive.ts), at collectDeadlineMs, at a
 * cancel that comes meanwhile (one that came before gets CANCELLED_COLLECT_MS) and when the node's disk
 * falls under its watermark; what was written whole by then is delivered.
 */
export async function collectOutputs(
  spec: RunSpec,
  deps: ExecutorDeps,
  ws: RunWorkspace,
  containerId: string,
  cancel?: AbortSignal,
): Promise<CollectedOutputs> {
  const settings: ExecutorSettings & RunBoundsSettings = deps.settings;
  const caps = { maxFileBytes: settings.maxOutputFileBytes, maxTotalBytes: settings.maxOutputTotalBytes };
  let scanner: ThreadedScanner | undefined;
  const stop = new AbortController();
  let stopped: CollectedOutputs['stopped'];
  const stopWith = (reason: string, fails: boolean) => {
    if (stop.signal.aborted) return;
    stopped = { reason, fails };
    stop.abort(reason);
  };
  const limitMs = cancel?.aborted ? CANCELLED_COLLECT_MS : collectDeadlineMs(caps);
  const deadline = setTimeout(
    () => stopWith(`collecting the outputs stopped at its ${Math.round(limitMs / 1000)} s limit; files not read by then are listed as unreadable`, false),
    limitMs,
  );
  const onCancel = () => stopWith(`collecting the outputs was stopped by the cancel (${cancelReasonOf(cancel)})`, false);
  cancel?.addEventListener('abort', onCancel, { once: true });
  let checking = false;
  const disk = setInterval(() => {
    if (checking) return;
    checking = true;
    void diskWatermarkReason(settings)
      .then((reason) => reason !== null && stopWith(`collecting the outputs stopped: ${reason}`, true))
      .finally(() => (checking = false));
  }, DISK_CHECK_MS);
  try {
    // Collected again from scratch when a restarted node adopts the container.
    await rm(ws.outputs, { recursive: true, force: true });
    // An engine that never answers is held to the same deadline as one that streams forever.
    const stoppedFirst = new Promise<'stopped'>((resolve) => stop.signal.addEventListener('abort', () => resolve('stopped'), { once: true }));
    const reading = deps.engine.readArchive(containerId, `${OUTPUTS_MOUNT}/.`);
    const tar = await Promise.race([reading, stoppedFirst]);
    if (tar === 'stopped') {
      void reading.then((t) => (t as (NodeJS.ReadableStream & { destroy?(): void }) | null)?.destroy?.(), () => undefined);
      return { leftOut: [{ path: '.', reason: 'unreadable' }], disclosure: [], ...(stopped ? { stopped } : {}) };
    }
    if (tar === null) return { leftOut: [], disclosure: [] };
    // The checks run in a worker thread beside the read-back where a core is free (threaded-scanner.ts);
    // a worker that fails costs no outputs, only findings saying which files were not checked.
    scanner = new ThreadedScanner(disclosureChecksOf(spec));
    const manifest = await extractOutputsArchive(tar, ws.outputs, caps, { isReserved: isReservedForResults, scanner, signal: stop.signal });
    return { leftOut: manifest.leftOut, disclosure: await scanner.findings(), ...(stopped ? { stopped } : {}) };
  } catch (err) {
    deps.log.child({ container: containerId }).error({ err }, 'could not collect the outputs');
    await rm(ws.outputs, { recursive: true, force: true }).catch(() => undefined);
    // Nothing is delivered, so nothing is flagged.
    return { leftOut: [{ path: '.', reason: 'unreadable' }], disclosure: [], ...(stopped ? { stopped } : {}) };
  } finally {
    clearTimeout(deadline);
    clearInterval(disk);
    cancel?.removeEventListener('abort', onCancel);
    await scanner?.close();
  }
}

/** A duration as a researcher reads it in reasons: hours to three digits (`0.01 h`). */
export function formatHours(ms: number): string {
  const hours = ms / 3_600_000;
  return `${Number(hours.toPrecision(3))} h`;
}
