/**
 * `nvidia-smi -L`: the one output that names MIG devices by UUID and profile, each under its GPU
 * (the `-q -x` report lists a MIG-mode GPU's `<mig_devices>` without either):
 *
 *   GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-513536b6-7d19-9063-b049-1e69664bb298)
 *     MIG 1g.20gb     Device  0: (UUID: MIG-5e1a0f3c-…)
 *
 * Drivers before R470 printed MIG UUIDs as `MIG-GPU-<uuid>/<gi>/<ci>`; both forms are read as they
 * are and passed to the container as printed. The supervisor (gpu-telemetry.ts) runs it only when a
 * report shows a GPU in MIG mode.
 */
import { execFile } from 'node:child_process';
import { firstLine, MIB } from './gpu-reading.js';

/** One MIG device as `-L` lists it. */
export interface ListedMigDevice {
  uuid: string;
  profile: string;
  /** `Device N`: the MIG device's index within its GPU, as `<mig_device><index>` in `-q -x`. */
  index: number;
}

/** MIG devices by the UUID of their GPU, in listed order; or why `-L` could not be read. */
export type ListReadResult = { ok: true; migDevices: Map<string, ListedMigDevice[]> } | { ok: false; reason: string };

const GPU_LINE = /^GPU\s+\d+:.*\(UUID:\s*(GPU-[^)\s]+)\)\s*$/;
const MIG_LINE = /^MIG\s+(\S+)\s+Device\s+(\d+):\s*\(UUID:\s*(MIG-[^)\s]+)\)\s*$/;

/** Reads `nvidia-smi -L` output; lines it does not know (warnings, blank) are skipped. */
export function parseNvidiaSmiList(text: string): Map<string, ListedMigDevice[]> {
  const byGpu = new Map<string, ListedMigDevice[]>();
  let current: ListedMigDevice[] | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const gpu = GPU_LINE.exec(line);
    if (gpu) {
      current = [];
      byGpu.set(gpu[1]!, current);
      continue;
    }
    const mig = MIG_LINE.exec(line);
    if (mig && current) current.push({ profile: mig[1]!.toLowerCase(), index: Number(mig[2]), uuid: mig[3]! });
  }
  return byGpu;
}

/** Runs `<command> -L` once (no shell, with a timeout). */
export function queryNvidiaSmiList(command: string, timeoutMs: number): Promise<ListReadResult> {
  return new Promise((resolve) => {
    execFile(command, ['-L'], { timeout: timeoutMs, maxBuffer: 4 * MIB, encoding: 'utf8', windowsHide: true }, (err, stdout, stderr) => {
      if (err) {
        resolve({ ok: false, reason: `${command} -L failed: ${firstLine(String(stdout)) || firstLine(String(stderr)) || err.message}` });
        return;
      }
      resolve({ ok: true, migDevices: parseNvidiaSmiList(String(stdout)) });
    });
  });
}
