/**
 * What one GPU reading is, and how nvidia-smi's printed values become its numbers: shared by the
 * `-q -x` reader (nvidia-smi-xml.ts), the `--query-gpu` reader (query-gpu-csv.ts) and the
 * supervisor that runs them (gpu-telemetry.ts).
 *
 * Values the hardware reports as `N/A`, `[N/A]`, `[Not Supported]`, "Requested functionality has
 * been deprecated" (or anything else that is not a number) become `null`, never 0 and never an error.
 */

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

/** Everything one `-q -x` report says about one GPU. */
export interface GpuReading extends GpuSample {
  name: string;
}

/** Why one nvidia-smi call gave no usable answer. */
export type NvidiaSmiFailureCode = 'missing' | 'failed' | 'timeout' | 'invalid-output';

/** An expected failure of nvidia-smi: a stable code and one line for the operator. */
export interface NvidiaSmiFailure {
  ok: false;
  code: NvidiaSmiFailureCode;
  reason: string;
}

/** Bytes in a MiB, nvidia-smi's memory unit. */
export const MIB = 1024 * 1024;

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
export function knownText(text: string | undefined): string | null {
  if (text === undefined) return null;
  return UNKNOWN_VALUES.has(unbracket(text).toLowerCase()) ? null : text.trim();
}

/** "99 %", "135.72 W", "11441 MiB", "64 C", "59" → the number; anything else (N/A…) → null. */
export function numberOf(text: string | undefined): number | null {
  const t = knownText(text);
  if (t === null) return null;
  const m = /^(-?\d+(?:\.\d+)?)(?:\s*[A-Za-z%]+)?$/.exec(t);
  return m ? Number(m[1]) : null;
}

/** A MiB figure as whole bytes, or null when unknown. */
export function bytesFromMiB(text: string | undefined): number | null {
  const mib = numberOf(text);
  return mib === null ? null : Math.round(mib * MIB);
}

/** A non-negative whole number (an index, a pid), or null. */
export function integerOf(text: string | undefined): number | null {
  const n = numberOf(text);
  return n !== null && Number.isInteger(n) && n >= 0 ? n : null;
}

/** The first non-blank line of what a process printed, at most 200 characters (for log lines). */
export function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l !== '') ?? ''
  ).slice(0, 200);
}
