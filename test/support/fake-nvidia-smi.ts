/**
 * A fake `nvidia-smi` for tests and benchmarks: a small shell script that answers from files beside
 * it, re-read on every call, so a test can change what the "GPUs" report while secd is running.
 *
 *   nvidia-smi -q -x                                   → gpu.xml (a recorded report, verbatim)
 *   nvidia-smi -L                                      → gpu.list (the fixture's `<name>.L.txt`
 *                                                        beside it, or one line per GPU of gpu.xml)
 *   any call while a file `fail` is there              → prints `fail`, exits with `fail.rc` (a
 *                                                        driver that lost a GPU: setFakeNvidiaSmiFailure)
 *   nvidia-smi --query-gpu=a,b --format=csv[,noheader][,nounits] [-lms N | --loop-ms=N]
 *                                                      → the requested columns of gpu.csv, every N ms
 *
 * gpu.csv is a `--query-gpu --format=csv` table (header with units). For an XML fixture it is
 * derived from the same XML (with regular expressions, independently of secd's parser); for a CSV
 * fixture (the H100 capture) it is the capture itself and gpu.xml is a minimal report built from it.
 * Every call appends its arguments to calls.txt; a looping call writes its pid to stream.pid.
 * No vitest imports: this file is compiled into dist for the benchmarks.
 */
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the recorded nvidia-smi outputs live (test/fixtures/nvidia-smi), from src or dist. */
export const NVIDIA_SMI_FIXTURES_DIR: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'test', 'fixtures', 'nvidia-smi');
    if (existsSync(path.join(candidate, 'SOURCES.md'))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) return path.resolve('test/fixtures/nvidia-smi');
    dir = up;
  }
})();

/** A fixture's path from its file name (e.g. `openpai_4x-tesla-k80_drv430.26_processes.xml`). */
export function nvidiaSmiFixture(name: string): string {
  return path.join(NVIDIA_SMI_FIXTURES_DIR, name);
}

/** What the fake prints: a fixture (file name in test/fixtures/nvidia-smi, or a path) or literal output. */
export type FakeNvidiaSmiFixture = string | { xml?: string; csv?: string; list?: string };

/** A value to make a fake GPU report: a number, null for `N/A`, or a raw token such as `[Not Supported]`. */
export type FakeValue = number | null | string;

/** A change to one fake GPU, picked by uuid or by index. */
export interface FakeGpuUpdate {
  uuid?: string;
  index?: number;
  utilizationPct?: FakeValue;
  memoryUsedMiB?: FakeValue;
  temperatureC?: FakeValue;
  powerW?: FakeValue;
  processes?: Array<{ pid: number; name: string; usedMemoryMiB: number | null }>;
}

const SCRIPT = (dir: string) => `#!/bin/sh
# Fake nvidia-smi (test/support/fake-nvidia-smi.ts): answers from the files in its folder.
dir=${shellQuote(dir)}
printf '%s\\n' "$*" >> "$dir/calls.txt"
if [ -f "$dir/fail" ]; then cat "$dir/fail"; exit "$(cat "$dir/fail.rc" 2>/dev/null || echo 15)"; fi
if [ "$*" = "-q -x" ] || [ "$*" = "-x -q" ]; then exec cat "$dir/gpu.xml"; fi
if [ "$*" = "-L" ]; then exec cat "$dir/gpu.list"; fi
query= format= lms= want_ms=
for arg do
  if [ -n "$want_ms" ]; then lms=$arg; want_ms=; continue; fi
  case "$arg" in
    --query-gpu=*) query=\${arg#--query-gpu=} ;;
    --format=*) format=\${arg#--format=} ;;
    -lms|--loop-ms) want_ms=1 ;;
    --loop-ms=*) lms=\${arg#--loop-ms=} ;;
    *) echo "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help." >&2; exit 2 ;;
  esac
done
if [ -z "$query" ] || [ -z "$format" ]; then echo "fake nvidia-smi answers only -q -x and --query-gpu" >&2; exit 2; fi
case ",$format," in *,noheader,*) header=0 ;; *) header=1 ;; esac
case ",$format," in *,nounits,*) nounits=1 ;; *) nounits=0 ;; esac
rows() {
  awk -v fields="$query" -v header="$1" -v nounits="$nounits" '
    BEGIN { FS = ", "; n = split(fields, want, ",") }
    NR == 1 && $0 !~ /(^|, )uuid(, |$)/ { raw = 1 }
    raw { print; next }
    NR == 1 {
      for (i = 1; i <= NF; i++) {
        name = $i; u = ""
        if (match(name, / \\[[^]]*\\]$/)) { u = substr(name, RSTART + 2, RLENGTH - 3); name = substr(name, 1, RSTART - 1) }
        col[name] = i; unit[i] = u; title[i] = $i
      }
      line = ""
      for (j = 1; j <= n; j++) {
        if (!(want[j] in col)) { printf "Field \\"%s\\" is not a valid field to query.\\n", want[j] > "/dev/stderr"; exit 2 }
        line = line (j > 1 ? ", " : "") (nounits ? want[j] : title[col[want[j]]])
      }
      if (header) print line
      next
    }
    {
      line = ""
      for (j = 1; j <= n; j++) {
        c = col[want[j]]; v = $c
        if (nounits && unit[c] != "" && substr(v, length(v) - length(unit[c])) == " " unit[c]) v = substr(v, 1, length(v) - length(unit[c]) - 1)
        line = line (j > 1 ? ", " : "") v
      }
      print line
    }' "$dir/gpu.csv"
}
if [ -z "$lms" ]; then rows "$header"; exit $?; fi
echo $$ > "$dir/stream.pid"
secs=$(awk -v ms="$lms" 'BEGIN { printf "%.3f", ms / 1000 }')
while :; do
  if [ -f "$dir/fail" ]; then cat "$dir/fail"; exit "$(cat "$dir/fail.rc" 2>/dev/null || echo 15)"; fi
  rows "$header" || exit $?
  header=0
  sleep "$secs"
done
`;

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

// ---- XML fixture → query-gpu table (independent of daemon/telemetry/gpu-telemetry.ts on purpose)

const CSV_COLUMNS = [
  'index',
  'uuid',
  'name',
  'utilization.gpu [%]',
  'memory.used [MiB]',
  'memory.total [MiB]',
  'temperature.gpu',
  'power.draw [W]',
];

function tag(block: string, name: string): string | undefined {
  return new RegExp(`<${name}>([^<]*)</${name}>`).exec(block)?.[1]?.trim();
}

function section(block: string, name: string): string {
  return new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(block)?.[1] ?? '';
}

// nvidia-smi's CSV shows an unavailable value in square brackets, its XML without.
function csvValue(xmlValue: string | undefined): string {
  if (xmlValue === undefined || xmlValue === '') return '[N/A]';
  return /^-?\d/.test(xmlValue) ? xmlValue : `[${xmlValue.replace(/^\[|\]$/g, '')}]`;
}

function gpuBlocks(xml: string): string[] {
  return [...xml.matchAll(/<gpu id="[^"]*">([\s\S]*?)<\/gpu>/g)].map((m) => m[1] ?? '');
}

function tableFromXml(xml: string): string {
  const lines = [CSV_COLUMNS.join(', ')];
  for (const block of gpuBlocks(xml)) {
    const memory = section(block, 'fb_memory_usage');
    const power = section(block, 'power_readings') || section(block, 'gpu_power_readings');
    const temp = tag(block, 'gpu_temp');
    lines.push(
      [
        tag(block, 'minor_number') ?? '[N/A]',
        tag(block, 'uuid') ?? '[N/A]',
        tag(block, 'product_name') ?? '[N/A]',
        csvValue(tag(block, 'gpu_util')),
        csvValue(tag(memory, 'used')),
        csvValue(tag(memory, 'total')),
        csvValue(temp?.replace(/ C$/, '')),
        csvValue(tag(power, 'power_draw') ?? tag(power, 'average_power_draw')),
      ].join(', '),
    );
  }
  return lines.join('\n') + '\n';
}

// ---- CSV fixture → minimal -q -x report

function parseTable(csv: string): { header: string[]; rows: string[][] } | null {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const header = lines[0]?.split(', ');
  if (!header || !header.some((h) => h === 'uuid')) return null;
  return { header, rows: lines.slice(1).map((l) => l.split(', ')) };
}

function columnOf(header: string[], field: string): number {
  return header.findIndex((h) => h === field || h.startsWith(`${field} [`));
}

function xmlValue(csvValue: string | undefined): string {
  return csvValue === undefined ? 'N/A' : csvValue.replace(/^\[(.*)\]$/, '$1');
}

function xmlFromTable(csv: string): string {
  const table = parseTable(csv);
  const gpus = (table?.rows ?? []).map((row) => {
    const get = (field: string) => {
      const i = columnOf(table!.header, field);
      return i < 0 ? undefined : row[i];
    };
    return `\t<gpu id="${xmlValue(get('pci.bus_id'))}">
\t\t<product_name>${xmlValue(get('name'))}</product_name>
\t\t<uuid>${xmlValue(get('uuid'))}</uuid>
\t\t<minor_number>${xmlValue(get('index'))}</minor_number>
\t\t<fb_memory_usage>
\t\t\t<total>${xmlValue(get('memory.total'))}</total>
\t\t\t<used>${xmlValue(get('memory.used'))}</used>
\t\t</fb_memory_usage>
\t\t<utilization>
\t\t\t<gpu_util>${xmlValue(get('utilization.gpu'))}</gpu_util>
\t\t</utilization>
\t\t<temperature>
\t\t\t<gpu_temp>${/^-?\d/.test(get('temperature.gpu') ?? '') ? `${get('temperature.gpu')} C` : xmlValue(get('temperature.gpu'))}</gpu_temp>
\t\t</temperature>
\t\t<gpu_power_readings>
\t\t\t<average_power_draw>${xmlValue(get('power.draw'))}</average_power_draw>
\t\t</gpu_power_readings>
\t\t<processes>
\t\t</processes>
\t</gpu>
`;
  });
  return `<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v13.dtd">
<nvidia_smi_log>
\t<driver_version>${xmlValue(table && table.rows[0] ? table.rows[0][columnOf(table.header, 'driver_version')] : undefined)}</driver_version>
\t<attached_gpus>${gpus.length}</attached_gpus>
${gpus.join('')}</nvidia_smi_log>
`;
}

// `nvidia-smi -L` for a report without a recorded listing: one line per GPU, no MIG devices.
function listFromXml(xml: string): string {
  return gpuBlocks(xml)
    .map((block, i) => `GPU ${i}: ${tag(block, 'product_name') ?? 'N/A'} (UUID: ${tag(block, 'uuid') ?? 'N/A'})\n`)
    .join('');
}

async function outputsOf(fixture: FakeNvidiaSmiFixture): Promise<{ xml: string; csv: string; list: string }> {
  if (typeof fixture === 'string') {
    const file = fixture.includes('/') ? fixture : nvidiaSmiFixture(fixture);
    const text = await fs.readFile(file, 'utf8');
    // A recorded `-L` listing beside an XML fixture (`<name>.L.txt`) is what `-L` prints.
    const list = await fs.readFile(file.replace(/\.xml$/, '.L.txt'), 'utf8').catch(() => undefined);
    return file.endsWith('.csv') ? outputsOf({ csv: text }) : outputsOf({ xml: text, ...(list !== undefined && file.endsWith('.xml') ? { list } : {}) });
  }
  const { xml, csv } = await outputsWithout(fixture);
  return { xml, csv, list: fixture.list ?? listFromXml(xml) };
}

async function outputsWithout(fixture: { xml?: string; csv?: string }): Promise<{ xml: string; csv: string }> {
  const { xml, csv } = fixture;
  if (xml !== undefined && csv !== undefined) return { xml, csv };
  if (xml !== undefined) return { xml, csv: gpuBlocks(xml).length > 0 || xml.includes('<nvidia_smi_log') ? tableFromXml(xml) : xml };
  if (csv !== undefined) return { xml: parseTable(csv) ? xmlFromTable(csv) : csv, csv };
  throw new Error('writeFakeNvidiaSmi: give a fixture name, or xml and/or csv text');
}

/**
 * Writes an executable `nvidia-smi` into `dir` (created if needed) answering from `fixture`, and
 * returns its path. Calling it again on the same folder swaps what the running fake prints.
 */
export async function writeFakeNvidiaSmi(dir: string, fixture: FakeNvidiaSmiFixture): Promise<string> {
  const absolute = path.resolve(dir);
  await fs.mkdir(absolute, { recursive: true });
  const { xml, csv, list } = await outputsOf(fixture);
  await writeAtomically(path.join(absolute, 'gpu.xml'), xml);
  await writeAtomically(path.join(absolute, 'gpu.csv'), csv);
  await writeAtomically(path.join(absolute, 'gpu.list'), list);
  const script = path.join(absolute, 'nvidia-smi');
  await writeAtomically(script, SCRIPT(absolute));
  await fs.chmod(script, 0o755);
  return script;
}

function formatted(value: FakeValue, unit: string, xml: boolean): string {
  if (value === null) return xml ? 'N/A' : '[N/A]';
  if (typeof value === 'string') return xml ? value.replace(/^\[(.*)\]$/, '$1') : `[${value.replace(/^\[|\]$/g, '')}]`;
  // nvidia-smi prints watts with two decimals ("135.72 W").
  const text = unit === 'W' ? value.toFixed(2) : String(value);
  return unit ? `${text} ${unit}` : text;
}

function replaceTag(block: string, name: string, value: string): string {
  return block.replace(new RegExp(`<${name}>[^<]*</${name}>`), `<${name}>${value}</${name}>`);
}

function replaceInSection(block: string, sectionName: string, name: string, value: string): string {
  return block.replace(new RegExp(`(<${sectionName}>)([\\s\\S]*?)(</${sectionName}>)`), (_m, open: string, body: string, close: string) => {
    return `${open}${replaceTag(body, name, value)}${close}`;
  });
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Changes what the fake in `dir` reports for some GPUs, in both its XML and its CSV answers; the
 * next call (and the next line of a running `-lms` loop) shows the new values.
 */
export async function setFakeGpuValues(dir: string, updates: FakeGpuUpdate | FakeGpuUpdate[]): Promise<void> {
  const absolute = path.resolve(dir);
  const csvFile = path.join(absolute, 'gpu.csv');
  const xmlFile = path.join(absolute, 'gpu.xml');
  const table = parseTable(await fs.readFile(csvFile, 'utf8'));
  let xml = await fs.readFile(xmlFile, 'utf8');
  if (!table) throw new Error(`setFakeGpuValues: the fake in ${dir} prints no GPU table`);
  const { header, rows } = table;
  const uuidCol = columnOf(header, 'uuid');
  const indexCol = columnOf(header, 'index');
  for (const update of Array.isArray(updates) ? updates : [updates]) {
    const row = rows.find((r) => (update.uuid !== undefined ? r[uuidCol] === update.uuid : Number(r[indexCol]) === update.index));
    if (!row) throw new Error(`setFakeGpuValues: no GPU ${update.uuid ?? `with index ${update.index}`} in the fake in ${dir}`);
    const uuid = row[uuidCol]!;
    const blockRe = new RegExp(`(<gpu id="[^"]*">)((?:(?!</gpu>)[\\s\\S])*?<uuid>${uuid}</uuid>[\\s\\S]*?)(</gpu>)`);
    const setCsv = (field: string, value: FakeValue, unit: string) => {
      const i = columnOf(header, field);
      if (i >= 0) row[i] = formatted(value, unit, false);
    };
    let block = blockRe.exec(xml)?.[2] ?? '';
    if (update.utilizationPct !== undefined) {
      setCsv('utilization.gpu', update.utilizationPct, '%');
      block = replaceTag(block, 'gpu_util', formatted(update.utilizationPct, '%', true));
    }
    if (update.memoryUsedMiB !== undefined) {
      setCsv('memory.used', update.memoryUsedMiB, 'MiB');
      block = replaceInSection(block, 'fb_memory_usage', 'used', formatted(update.memoryUsedMiB, 'MiB', true));
    }
    if (update.temperatureC !== undefined) {
      setCsv('temperature.gpu', update.temperatureC, '');
      block = replaceTag(block, 'gpu_temp', formatted(update.temperatureC, 'C', true));
    }
    if (update.powerW !== undefined) {
      const w = update.powerW;
      setCsv('power.draw', w, 'W');
      setCsv('power.draw.average', w, 'W');
      for (const s of ['power_readings', 'gpu_power_readings']) {
        block = replaceInSection(block, s, 'power_draw', formatted(w, 'W', true));
        block = replaceInSection(block, s, 'average_power_draw', formatted(w, 'W', true));
      }
    }
    if (update.processes !== undefined) {
      const infos = update.processes
        .map((p) => {
          const used = p.usedMemoryMiB === null ? 'N/A' : `${p.usedMemoryMiB} MiB`;
          return [
            '\t\t\t<process_info>',
            `\t\t\t\t<pid>${p.pid}</pid>`,
            '\t\t\t\t<type>C</type>',
            `\t\t\t\t<process_name>${escapeXml(p.name)}</process_name>`,
            `\t\t\t\t<used_memory>${used}</used_memory>`,
            '\t\t\t</process_info>\n',
          ].join('\n');
        })
        .join('');
      block = block.replace(/<processes>[\s\S]*?<\/processes>/, `<processes>\n${infos}\t\t</processes>`);
    }
    xml = xml.replace(blockRe, (_m, open: string, _body: string, close: string) => `${open}${block}${close}`);
  }
  await writeAtomically(xmlFile, xml);
  await writeAtomically(csvFile, [header, ...rows].map((r) => r.join(', ')).join('\n') + '\n');
}

/** The pid of the fake's running `-lms` loop in `dir`, if one was started. */
export async function fakeStreamPid(dir: string): Promise<number | null> {
  const text = await fs.readFile(path.join(dir, 'stream.pid'), 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return Number.isInteger(pid) ? pid : null;
}

/** The argument lines of every call the fake in `dir` answered, oldest first. */
export async function fakeNvidiaSmiCalls(dir: string): Promise<string[]> {
  const text = await fs.readFile(path.join(dir, 'calls.txt'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l !== '');
}
