/**
 * A run's folder on the node, `work_dir/runs/<run id>/`: everything the node needs to carry a run on
 * after its daemon restarts ("derive, don't remember"). The node agent owns `spec.json` (written before
 * it acknowledges the assignment) and `result.json` (written before the result is first sent, removed
 * with the folder once the leader acknowledged it). The executor owns the rest: the checkout, the
 * outputs, the logs it captured and `journal.json`, the steps it has passed.
 *
 * Files are written whole to a temporary name and renamed, so a crash leaves the old or the new
 * version, never half of one.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { disclosureFindingSchema } from '../../scheduler/contract/disclosure.js';
import { runOutcomeSchema, runSpecSchema } from '../../scheduler/contract/protocol.js';
import type { RunOutcome, RunSpec } from '../../scheduler/contract/run-spec.js';

/** The paths of one run's folder. */
export interface RunWorkspace {
  dir: string;
  src: string;
  outputs: string;
  spec: string;
  result: string;
  journal: string;
  buildLog: string;
  runLog: string;
}

/** Where the node keeps the folder of a run whose results it could not deliver, once the leader has its result. */
export function keptRunDir(workDir: string, runId: string): string {
  return resolve(workDir, 'kept', runId);
}

/** Where run `runId` lives under `workDir`. */
export function runWorkspace(workDir: string, runId: string): RunWorkspace {
  const dir = resolve(workDir, 'runs', runId);
  return {
    dir,
    src: join(dir, 'src'),
    outputs: join(dir, 'outputs'),
    spec: join(dir, 'spec.json'),
    result: join(dir, 'result.json'),
    journal: join(dir, 'journal.json'),
    buildLog: join(dir, 'build.log'),
    runLog: join(dir, 'run.log'),
  };
}

/** The executor's record of how far a run got (each step adds to it). */
export const journalSchema = z.object({
  /** Names the results folder and branch: a resumed run must deliver under the same name. */
  stamp: z.string(),
  /**
   * The last step reached: `building` (prepare and build: repeated from the start), `running` (the
   * image is built; the container is made and waited for), `uploading` (the container has ended and
   * its outputs and logs are in this folder: deliver them), `delivered` (the results are where they go
   * and `outcome` says how the run ended: only the folder's files are left to remove).
   */
  phase: z.enum(['building', 'running', 'uploading', 'delivered']),
  buildStartedAt: z.string().nullable(),
  buildMs: z.number().nullable(),
  imageId: z.string().nullable(),
  /**
   * The run container the executor created (set before it starts; null: not created yet). Only this
   * id is ever adopted after a restart: a label alone is no proof (any image can carry `secd.run`).
   * Absent: a journal from before secd recorded it.
   */
  containerId: z.string().nullable().optional(),
  /**
   * secd began stopping the container (its runfor limit, a cancel), journaled before the stop: a node
   * restarted after it reports the run's end as secd's stop, with the canceller's reason.
   */
  stopping: z.object({ why: z.enum(['timed_out', 'cancelled']), reason: z.string() }).optional(),
  /** Every results commit made for the run's branch, each recorded before it was pushed. */
  resultsCommits: z.array(z.string()).optional(),
  /** Why the results could not be delivered: the run's folder is kept on the node (keepRunFolder). */
  undelivered: z.string().optional(),
  /** What collecting /outputs from the engine left out (links, special files, caps); absent: nothing collected. */
  outputsLeftOut: z
    .array(
      z.object({
        path: z.string(),
        reason: z.enum(['symlink', 'file_too_large', 'total_too_large', 'not_a_regular_file', 'reserved_name', 'unreadable']),
        size: z.number().optional(),
      }),
    )
    .optional(),
  /**
   * What the disclosure checks flagged while /outputs was collected (the logs are checked at delivery):
   * a run delivered after a restart reports them without reading its outputs again. Absent: none collected.
   */
  outputsDisclosure: z.array(disclosureFindingSchema).optional(),
  /** Datasets and cache after the container (the run.json fields and the socket's bytes); absent: none measured. */
  after: z
    .object({
      report: z.record(z.string(), z.unknown()),
      bytes: z.object({ fromServer: z.number(), toServer: z.number() }).nullable(),
    })
    .optional(),
  /** How the run ended, once delivered (phase `delivered`): what a restarted node reports. */
  outcome: runOutcomeSchema.optional(),
  /** How the container ended (set with phase `uploading`); the end and reason the run will report. */
  ended: z
    .object({
      end: z.enum(['succeeded', 'failed', 'timed_out', 'cancelled']),
      reason: z.string(),
      exitCode: z.number().int().nullable(),
      startedAt: z.string().nullable(),
      runMs: z.number().nullable(),
    })
    .nullable(),
});

/** What journal.json holds. */
export type RunJournal = z.infer<typeof journalSchema>;

/** Write `data` to `file` atomically (temp file + rename), readable only by the node's user. */
export async function writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, file);
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Save the spec (it carries credentials: mode 0600) before the assignment is acknowledged. */
export async function saveSpec(ws: RunWorkspace, spec: RunSpec): Promise<void> {
  await mkdir(ws.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(ws.spec, JSON.stringify(spec));
}

/** The saved spec, or null when missing or unreadable. */
export async function loadSpec(ws: RunWorkspace): Promise<RunSpec | null> {
  const parsed = runSpecSchema.safeParse(await readJson(ws.spec));
  return parsed.success ? parsed.data : null;
}

/** Save the outcome until the leader acknowledges it. */
export async function saveResult(ws: RunWorkspace, outcome: RunOutcome): Promise<void> {
  await mkdir(ws.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(ws.result, JSON.stringify(outcome));
}

/** The saved outcome, or null. */
export async function loadResult(ws: RunWorkspace): Promise<RunOutcome | null> {
  const parsed = runOutcomeSchema.safeParse(await readJson(ws.result));
  return parsed.success ? parsed.data : null;
}

/** Record a step of the execution. */
export async function saveJournal(ws: RunWorkspace, journal: RunJournal): Promise<void> {
  await writeFileAtomic(ws.journal, JSON.stringify(journal));
}

/** The execution's record, or null when it never started (or the file is unreadable). */
export async function loadJournal(ws: RunWorkspace): Promise<RunJournal | null> {
  const parsed = journalSchema.safeParse(await readJson(ws.journal));
  return parsed.success ? parsed.data : null;
}

/**
 * The leader has the result of a run whose results were never delivered: move its folder (checkout
 * with the results commit, outputs, logs, journal) to `work_dir/kept/<run id>/` for the operator,
 * without the spec (it carries credentials) and the result. Returns where it went.
 */
export async function keepRunFolder(workDir: string, runId: string): Promise<string> {
  const ws = runWorkspace(workDir, runId);
  const kept = keptRunDir(workDir, runId);
  await rm(ws.spec, { force: true });
  await rm(ws.result, { force: true });
  await mkdir(dirname(kept), { recursive: true, mode: 0o700 });
  await rename(ws.dir, kept);
  return kept;
}
