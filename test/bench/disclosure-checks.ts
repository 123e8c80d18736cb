/**
 * Benchmark: what do the disclosure checks (daemon/results/disclosure-scan.ts) cost while a run's
 * outputs are read back?
 *
 * A 256 MB CSV (a header; an integer id, a text region, an integer count with some small ones, a
 * decimal score and a quoted free-text note with commas in it) is packed into a tar stream in this
 * process (tar-stream, as the engine's archive API would stream it) and read back through
 * extractOutputsArchive into a temporary folder, without and with the scanner, in alternating rounds;
 * each figure is the median of the rounds. The CSV is made once, before any round, so making it costs
 * neither side. It also prints the scanner alone on the same bytes (no tar, no disk).
 *
 * What it cannot show: the engine's own stream (dockerd's tar over its socket) is slower than an
 * in-process pack, so the share the checks take of a real read-back is smaller than printed here.
 *
 * Run: npm run build && node dist/test/bench/disclosure-checks.js [megabytes] [rounds]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'tar-stream';
import { DisclosureScanner } from '../../daemon/results/disclosure-scan.js';
import { extractOutputsArchive } from '../../daemon/results/outputs-archive.js';
import { DEFAULT_DISCLOSURE_CHECKS } from '../../scheduler/contract/disclosure.js';

const MEGABYTES = Number(process.argv[2] ?? 256);
const ROUNDS = Number(process.argv[3] ?? 3);
const CHUNK_ROWS = 1000;
const REGIONS = ['north', 'south', 'east', 'west', 'Stockholms län', 'Västra Götaland'];
// The checks as a leader would send them; the file cap raised so that the size rule is not all it reports.
const CHECKS = { ...DEFAULT_DISCLOSURE_CHECKS, maxFileBytes: 1 << 30, maxCsvRows: 10_000_000 };

/** The CSV as the chunks a stream would carry (about 60 KiB each). */
function makeCsv(bytes: number): Buffer[] {
  const chunks: Buffer[] = [Buffer.from('id,region,count,score,note\n')];
  let size = chunks[0]!.length;
  for (let id = 1; size < bytes; ) {
    const rows: string[] = [];
    for (let k = 0; k < CHUNK_ROWS; k++, id++) {
      // About one count in 40 is small (1..9); the rest are 10..9999.
      const count = id % 40 === 0 ? 1 + (id % 9) : 10 + ((id * 7919) % 9990);
      const note = id % 3 === 0 ? `"follow-up ${id % 97}, visit ${id % 13}"` : `visit ${id % 13}`;
      rows.push(`${id},${REGIONS[id % REGIONS.length]},${count},${((id * 31) % 10000) / 100},${note}\n`);
    }
    const chunk = Buffer.from(rows.join(''));
    chunks.push(chunk);
    size += chunk.length;
  }
  return chunks;
}

/** A tar stream of one file, `./table.csv`, fed from `chunks` as fast as the reader takes them. */
function tarOf(chunks: Buffer[], size: number): NodeJS.ReadableStream {
  const p = pack();
  const entry = p.entry({ name: './table.csv', size, type: 'file', mode: 0o644 });
  void (async () => {
    for (const c of chunks) {
      if (!entry.write(c)) await new Promise<void>((resolve) => entry.once('drain', () => resolve()));
    }
    entry.end(() => undefined);
    p.finalize();
  })();
  return p as unknown as NodeJS.ReadableStream;
}

async function readBack(chunks: Buffer[], size: number, scanner: DisclosureScanner | undefined): Promise<number> {
  const dest = await mkdtemp(join(tmpdir(), 'secd-bench-disclosure-'));
  try {
    const t0 = performance.now();
    const manifest = await extractOutputsArchive(tarOf(chunks, size), dest, { maxFileBytes: 2 ** 40, maxTotalBytes: 2 ** 40 }, scanner ? { scanner } : {});
    const ms = performance.now() - t0;
    if (manifest.files !== 1 || manifest.bytes !== size) throw new Error(`read back ${manifest.files} files, ${manifest.bytes} bytes: expected 1, ${size}`);
    return ms;
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

async function main(): Promise<void> {
  const chunks = makeCsv(MEGABYTES * 1e6);
  const size = chunks.reduce((n, c) => n + c.length, 0);
  process.stdout.write(`CSV: ${(size / 1e6).toFixed(1)} MB in ${chunks.length} chunks; ${ROUNDS} alternating rounds after one warm-up each\n`);
  await readBack(chunks, size, undefined);
  await readBack(chunks, size, new DisclosureScanner(CHECKS));

  const plain: number[] = [];
  const checked: number[] = [];
  let findings = 0;
  for (let r = 0; r < ROUNDS; r++) {
    plain.push(await readBack(chunks, size, undefined));
    const scanner = new DisclosureScanner(CHECKS);
    checked.push(await readBack(chunks, size, scanner));
    findings = scanner.findings().length;
    process.stdout.write(`  round ${r + 1}: without ${mbps(size, plain[r]!)} MB/s, with checks ${mbps(size, checked[r]!)} MB/s\n`);
  }

  const alone: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const scanner = new DisclosureScanner(CHECKS);
    const t0 = performance.now();
    const file = scanner.file('table.csv', size);
    for (const c of chunks) file.write(c);
    file.end();
    alone.push(performance.now() - t0);
  }

  const mp = median(plain);
  const mc = median(checked);
  process.stdout.write(
    `\nreading back ${(size / 1e6).toFixed(0)} MB through extractOutputsArchive, median of ${ROUNDS}:\n` +
      `  without checks   ${mbps(size, mp)} MB/s\n` +
      `  with checks      ${mbps(size, mc)} MB/s   (${findings} findings)\n` +
      `  slowdown         ${(((mc - mp) / mp) * 100).toFixed(1)} %\n` +
      `the scanner alone on the same chunks: ${mbps(size, median(alone))} MB/s\n`,
  );
}

await main();
