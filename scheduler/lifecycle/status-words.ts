/**
 * What a run is doing, in the words a researcher reads beside their commit (the `secd` commit status,
 * commit-statuses.ts) and at the top of its run page (web/pages.ts): the same sentence in both places.
 *
 * - queued: the planner's sentence (scheduler/plan/queue-place.ts): `queued: 2nd in line for 2× H100…`
 * - building: `building on gpu-03`
 * - running: `running on gpu-03 (2× H100), 2 h 50 min left` — the node's name, its GPUs' models as
 *   the node reports them, and what is left of `runfor`, which counts from the start of the build
 *   (the node stops the container at runfor minus the build's time)
 * - any other state: the run's reason, as the lifecycle wrote it
 *
 * Then secd.yml's warnings (withSecdYmlWarnings), within GitLab's 255 characters. Pure functions: the
 * caller reads the run, the node's GPUs and the clock.
 */
import { ordinal } from '../plan/queue-place.js';

export { ordinal };

/** GitLab keeps 255 characters of a commit status description. */
const STATUS_ROOM = 255;

/** One GPU (or MIG device) a run holds, as its node reports it. */
export interface GpuModel {
  /** The model as nvidia-smi prints it (`NVIDIA H100 80GB HBM3`); a MIG device: its GPU's. */
  name: string;
  /** A MIG device's profile (`3g.40gb`); null for a whole GPU. */
  migProfile: string | null;
}

/** What the words of a run are made from. */
export interface RunWordsInput {
  state: string;
  reason: string;
  node: string | null;
  /** One entry per GPU the run holds: its model, or null where the node no longer reports it. */
  gpus: ReadonlyArray<GpuModel | null>;
  /** The run's runfor (ms), null when unknown (a reader who may not see the run's config). */
  runforMs: number | null;
  /** When runfor started counting: the build's start (else the container's), null when unknown. */
  clockFrom: string | null;
}

/** Vendor words nvidia-smi puts before the model. */
const BRANDS = /^(?:NVIDIA\s+)?(?:Tesla\s+|GeForce\s+|Quadro\s+)?/i;

/**
 * The model as people say it: `H100` of `NVIDIA H100 80GB HBM3`, `A100` of `NVIDIA A100-SXM4-80GB`,
 * `K80` of `Tesla K80`, `RTX A5000` of `NVIDIA RTX A5000`, `RTX 2080 Ti` of `GeForce RTX 2080 Ti`.
 */
export function shortGpuModel(name: string): string {
  const rest = name.trim().replace(BRANDS, '').trim();
  if (rest === '') return name.trim() || 'GPU';
  // Data-centre parts are one letter-and-digits word; form factor and memory follow it.
  const part = /^([A-Z]{1,2}\d{1,3}[A-Z]?)(?=$|[\s-])/.exec(rest);
  if (part) return part[1]!;
  // Workstation and desktop names keep their words, less memory sizes and "Generation".
  return rest.replace(/\b\d+\s*GB\b/gi, '').replace(/\bGeneration\b/gi, '').replace(/\s+/g, ' ').trim();
}

/** A run's GPUs as `2× H100`, `1× A100 MIG 3g.40gb`, `1× H100 + 1× A100`; `2 GPUs` when no model is known. */
export function gpuWords(gpus: ReadonlyArray<GpuModel | null>): string {
  if (gpus.length === 0) return '';
  const counts = new Map<string, number>();
  let unknown = 0;
  for (const g of gpus) {
    if (!g) {
      unknown++;
      continue;
    }
    const model = `${shortGpuModel(g.name)}${g.migProfile ? ` MIG ${g.migProfile}` : ''}`;
    counts.set(model, (counts.get(model) ?? 0) + 1);
  }
  const parts = [...counts].map(([model, n]) => `${n}× ${model}`);
  if (unknown > 0) parts.push(parts.length === 0 ? (unknown === 1 ? '1 GPU' : `${unknown} GPUs`) : `${unknown}× other`);
  return parts.join(' + ');
}

/** `2 h 50 min`, `3 h`, `45 min`, `under a minute` (to the nearest minute). */
export function timeLeftWords(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError(`time left must be a number of milliseconds (got ${ms})`);
  const minutes = Math.round(ms / 60_000);
  if (minutes < 1) return 'under a minute';
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (h === 0) return `${m} min`;
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}

/** `building on gpu-03`. */
export function buildingWords(node: string): string {
  return `building on ${node}`;
}

/** `running on gpu-03 (2× H100), 2 h 50 min left`; no GPUs: no brackets; no runfor known: no time. */
export function runningWords(node: string, gpus: ReadonlyArray<GpuModel | null>, leftMs: number | null): string {
  const what = gpuWords(gpus);
  const base = `running on ${node}${what ? ` (${what})` : ''}`;
  if (leftMs === null) return base;
  return leftMs <= 0 ? `${base}, at its runfor limit` : `${base}, ${timeLeftWords(leftMs)} left`;
}

/** The words of a run as it is at `now` (see the module comment). */
export function runWords(run: RunWordsInput, now: Date): string {
  if (run.node !== null && run.state === 'building') return buildingWords(run.node);
  if (run.node !== null && run.state === 'running') {
    const from = run.clockFrom === null ? Number.NaN : Date.parse(run.clockFrom);
    const left = run.runforMs === null || Number.isNaN(from) ? null : run.runforMs - (now.getTime() - from);
    return runningWords(run.node, run.gpus, left);
  }
  return run.reason;
}

/**
 * A commit status description followed by secd.yml's warnings: an unknown key (`run_for: 1`)
 * otherwise runs with the default and says so only inside run.json, where nobody looks. Warnings
 * that do not fit GitLab's 255 characters are counted; the run page lists them all.
 */
export function withSecdYmlWarnings(description: string, warnings: readonly string[]): string {
  if (warnings.length === 0) return description;
  // "secd.yml: " once, then each warning without it.
  const items = warnings.map((w) => w.replace(/^secd\.yml: /, ''));
  const countOf = (shown: number) => (shown < items.length ? `; ${items.length - shown} more on the run page` : '');
  let text = `${description}; secd.yml: ${items[0]}`;
  let shown = 1;
  for (const item of items.slice(1)) {
    if (`${text}; ${item}${countOf(shown + 1)}`.length > STATUS_ROOM) break;
    text += `; ${item}`;
    shown += 1;
  }
  text += countOf(shown);
  return text.length > STATUS_ROOM ? `${text.slice(0, STATUS_ROOM - 1)}…` : text;
}
