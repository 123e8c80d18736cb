/**
 * What one GPU reading is, and how nvidia-smi's printed values become its numbers: shared by the
 * `-q -x` reader (nvidia-smi-xml.ts), the `--query-gpu` reader (query-gpu-csv.ts) and the
 * supervisor that runs them (gpu-telemetry.ts). Readings are mapped from nvidia-smi's text once, here
 * and in those two readers, straight to the wire shape of DESIGN §7: snake_case, bytes, watts, °C.
 *
 * Values the hardware reports as `N/A`, `[N/A]`, `[Not Supported]`, "Requested functionality has
 * been deprecated" (or anything else that is not a number) become `null`, never 0 and never an error.
 */
import type { GpuStatus, MigDevice } from '../../scheduler/contract/protocol.js';

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

/**
 * Everything one `-q -x` report says about one GPU. `mig_mode` null: the report does not say (older
 * DTDs, or N/A on GPUs without MIG); `mig_devices` come from `<mig_devices>` with their UUID and
 * profile from `nvidia-smi -L` (nvidia-smi-list.ts), which the XML does not carry.
 */
export type GpuReading = GpuSample & { name: string; mig_mode: boolean | null; mig_devices: MigDevice[]; pci_bus_id: string | null };

/** Why one nvidia-smi call gave no usable answer. */
export type NvidiaSmiFailureCode = 'missing' | 'failed' | 'timeout' | 'invalid-output';

/** An expected failure of nvidia-smi: a stable code and one line for the operator. */
export interface NvidiaSmiFailure {
  ok: false;
  code: NvidiaSmiFailureCode;
  reason: string;
  /** What the failing nvidia-smi printed (stdout then stderr, at most 64 KiB): names the GPUs it lost. */
  output?: string;
}

/** A GPU nvidia-smi could not read: `lost` (fallen off the bus) or `error` (Unknown Error, needs a reset). */
export interface GpuTrouble {
  health: 'lost' | 'error';
  problem: string;
}

/** What one printed value says of its GPU's health: `[GPU is lost]`, `[Unknown Error]`, `[GPU requires reset]`. */
export function troubleOf(text: string | undefined): GpuTrouble | null {
  if (text === undefined) return null;
  const t = unbracket(text).toLowerCase();
  if (t === 'gpu is lost') return { health: 'lost', problem: 'nvidia-smi: GPU is lost' };
  if (t === 'unknown error') return { health: 'error', problem: 'nvidia-smi: Unknown Error' };
  if (t === 'gpu requires reset') return { health: 'error', problem: 'nvidia-smi: GPU requires reset' };
  return null;
}

/** A GPU a failing nvidia-smi named: by PCI bus id (`0000:3B:00.0`) and/or index, and what it said. */
export interface NamedGpuTrouble extends GpuTrouble {
  busId: string | null;
  index: number | null;
}

// "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system…",
// "…for GPU0000:08:00.0: Unknown Error", "…for GPU1: 0000:34:00.0: Unknown Error", "…for GPU1: Unknown Error".
const DEVICE_HANDLE =
  /Unable to determine the device handle for GPU\s*(\d+(?=:(?:\s|$)))?:?\s*(?:([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]):?)?\s*(.*)$/;

/** The GPUs a failing nvidia-smi says it could not reach, one per "Unable to determine the device handle" line. */
export function troublesIn(output: string): NamedGpuTrouble[] {
  return output.split('\n').flatMap((line): NamedGpuTrouble[] => {
    const m = DEVICE_HANDLE.exec(line.trim());
    if (!m) return [];
    const said = (m[3] ?? '').trim();
    const lost = /gpu is lost|fallen off the bus/i.test(said);
    return [{ busId: m[2] ?? null, index: m[1] === undefined ? null : Number(m[1]), health: lost ? 'lost' : 'error', problem: `nvidia-smi: ${line.trim().slice(0, 300)}` }];
  });
}

/** Whether two PCI bus ids name the same device ("00000000:01:00.0" in XML, "0000:01:00.0" in messages). */
export function sameBusId(a: string, b: string): boolean {
  const norm = (id: string) => {
    const [domain = '', rest = ''] = id.toLowerCase().split(/:(.*)/);
    return `${Number.parseInt(domain, 16)}:${rest}`;
  };
  return norm(a) === norm(b);
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
