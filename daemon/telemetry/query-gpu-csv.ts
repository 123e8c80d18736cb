/**
 * `nvidia-smi --query-gpu=… --format=csv`: the long-lived stream's lines read one at a time into GPU
 * samples. A streamed 7-field line parses in ~3 µs (test/bench/telemetry-cost.ts), which is why the
 * supervisor (gpu-telemetry.ts) samples numbers from this stream rather than from `-q -x`.
 */
import { bytesFromMiB, integerOf, knownText, numberOf, troubleOf, type GpuSample, type GpuTrouble } from './gpu-reading.js';

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


/** One data line of `--query-gpu` CSV: field name (units stripped) → value, null when unknown. */
export type QueryGpuRow = Record<string, string | null>;

/** What one CSV line was. */
export type QueryGpuLine =
  | { kind: 'blank' }
  | { kind: 'header'; fields: string[] }
  | { kind: 'row'; row: QueryGpuRow; /** A value printed as `[GPU is lost]` or `[Unknown Error]`. */ trouble: GpuTrouble | null }
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
      let trouble: GpuTrouble | null = null;
      columns.forEach((name, i) => {
        row[name] = knownText(cells[i]);
        trouble ??= troubleOf(cells[i]);
      });
      return { kind: 'row', row, trouble };
    },
  };
}

/** One GPU's numbers from a `--query-gpu` row (units in the values, if any, are ignored). */
export function sampleFromQueryGpuRow(row: QueryGpuRow, trouble: GpuTrouble | null = null): { ok: true; sample: GpuSample } | { ok: false; reason: string } {
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
      utilization_pct: numberOf(v('utilization.gpu')),
      memory_used_bytes: bytesFromMiB(v('memory.used')),
      memory_total_bytes: bytesFromMiB(v('memory.total')),
      temperature_c: numberOf(v('temperature.gpu')),
      power_w: numberOf(v('power.draw')),
      processes: [],
      ...(trouble ? { health: trouble.health, problem: trouble.problem } : {}),
    },
  };
}
