/**
 * What one GPU reading is, and how nvidia-smi's printed values become its numbers: shared by the
 * `-q -x` reader (nvidia-smi-xml.ts), the `--query-gpu` reader (query-gpu-csv.ts) and the
 * supervisor that runs them (gpu-telemetry.ts). Readings are mapped from nvidia-smi's text once, here
 * and in those two readers, straight to the wire shape of DESIGN §7: snake_case, bytes, watts, °C.
 *
 * Values the hardware reports as `N/A`, `[N/A]`, `[Not Supported]`, "Requested functionality has
 * been deprecated" (or anything else that is not a number) become `null`, never 0 and never an error.
 */
import type { GpuStatus } from '../../scheduler/contract/protocol.js';

/** A process holding memory on a GPU (secd's own containers or anything else). */
export interface GpuProcess {
  pid: number;
  name: string;
  used_memory_bytes: number | null;
}

/**
 * One GPU's state at one moment, already in the words of the node's status message
 * (scheduler/contract/protocol.ts `gpuStatusSchema`), so nothing maps it again on its way to the
 * leader and the page; `null` = the hardware or driver did not say. Its processes are listed: how
 * many there are, and whether they are foreign, is the node's report's to say (node-report.ts).
 */
export type GpuSample = Omit<GpuStatus, 'processes' | 'foreign_busy'> & { processes: GpuProcess[] };

/** Everything one `-q -x` report says about one GPU. */
export type GpuReading = GpuSample & { name: string };

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
