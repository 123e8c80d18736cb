/**
 * Benchmark: what do the disclosure checks (daemon/results/disclosure-scan.ts) cost while a run's
 * outputs are read back?
 *
 * A 256 MB CSV (a header; an integer id, a text region, an integer count with some small ones, a
 * decimal score and a quoted free-text note with commas in it) is packed into a tar stream in this
 * process (tar-stream, as the engine's archive API would stream it) and read back through
 * extractOutputsArchive into a temporary folder without checks, with them on the event loop
 * (DisclosureScanner) and with them in a worker thread (ThreadedScanner, forced), in alternating
 * rounds; each figure is the median of the rounds, and each round checks that the worker found
 * exactly what the event loop found. The CSV is made once, before any round, so making it costs no
 * side. It also prints the scanner alone on the same bytes (no tar, no disk), and the parser alone in
 * a worker behind each of three hand-offs (shared slabs, a fresh transferred buffer per batch, a pool
 * of buffers transferred there and back), with the main thread's busy time.
 *
 * Where Docker answers, it also reads the same file back as the node does (the engine's archive API,
 * `GET /containers/{id}/archive`, from a created container the file was copied into), with and
 * without the checks: dockerd's tar over its socket is the read-back a run's outputs really get.
 *
 * Run: npm run build && node dist/test/bench/disclosure-checks.js [megabytes] [rounds]
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance as eventLoop } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { pack } from 'tar-stream';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { DisclosureScanner } from '../../daemon/results/disclosure-scan.js';
import { extractOutputsArchive } from '../../daemon/results/outputs-archive.js';
import { coreToSpare, ThreadedScanner } from '../../daemon/results/threaded-scanner.js';
import { DEFAULT_DISCLOSURE_CHECKS, type DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../support/test-images.js';

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

/** How a round checks what it reads back: not at all, on the event loop (DisclosureScanner), or in a worker (ThreadedScanner). */
type Mode = 'without' | 'inline' | 'threaded';

/** Reads the tar back once; the time includes the findings (a threaded scan's last bytes and its answer). */
async function readBack(tar: () => Promise<NodeJS.ReadableStream>, size: number, mode: Mode): Promise<{ ms: number; findings: DisclosureFinding[] }> {
  const dest = await mkdtemp(join(tmpdir(), 'secd-bench-disclosure-'));
  const inline = mode === 'inline' ? new DisclosureScanner(CHECKS) : null;
  // The worker forced (inlineBytes 0): the node itself would check inline with no core to spare.
  const threaded = mode === 'threaded' ? new ThreadedScanner(CHECKS, { inlineBytes: 0 }) : null;
  const scanner = inline ?? threaded;
  try {
    const t0 = performance.now();
    const manifest = await extractOutputsArchive(await tar(), dest, { maxFileBytes: 2 ** 40, maxTotalBytes: 2 ** 40 }, scanner ? { scanner } : {});
    const findings = inline ? inline.findings() : threaded ? await threaded.findings() : [];
    const ms = performance.now() - t0;
    if (manifest.files !== 1 || manifest.bytes !== size) throw new Error(`read back ${manifest.files} files, ${manifest.bytes} bytes: expected 1, ${size}`);
    return { ms, findings };
  } finally {
    await threaded?.close();
    await rm(dest, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);
const slower = (ms: number, base: number) => `${(((ms - base) / base) * 100).toFixed(1)} %`;

/** Alternating rounds of reading back `size` bytes from `tar()` without checks, with them inline and in a worker: medians and slowdowns. */
async function compare(label: string, tar: () => Promise<NodeJS.ReadableStream>, size: number): Promise<void> {
  process.stdout.write(`\n${label}: ${ROUNDS} alternating rounds after one warm-up each (load ${loadavg()[0]!.toFixed(1)}, ${coreToSpare() ? 'a core to spare: a node would use the worker' : 'no core to spare: a node would check inline'})\n`);
  const modes: Mode[] = ['without', 'inline', 'threaded'];
  for (const mode of modes) await readBack(tar, size, mode);
  const times: Record<Mode, number[]> = { without: [], inline: [], threaded: [] };
  let findings = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const round: Partial<Record<Mode, DisclosureFinding[]>> = {};
    for (const mode of modes) {
      const { ms, findings: found } = await readBack(tar, size, mode);
      times[mode].push(ms);
      round[mode] = found;
    }
    // The worker must find exactly what the event loop finds, or its speed means nothing.
    if (JSON.stringify(round.threaded) !== JSON.stringify(round.inline)) throw new Error('the threaded scan found something else than the inline scan');
    findings = round.inline!.length;
    process.stdout.write(
      `  round ${r + 1}: without ${mbps(size, times.without[r]!)} MB/s, checks inline ${mbps(size, times.inline[r]!)} MB/s, ` +
        `checks in a worker ${mbps(size, times.threaded[r]!)} MB/s\n`,
    );
  }
  const [mp, mi, mt] = [median(times.without), median(times.inline), median(times.threaded)];
  process.stdout.write(
    `  median: without checks ${mbps(size, mp)} MB/s; checks inline ${mbps(size, mi)} MB/s (${slower(mi, mp)} slower); ` +
      `checks in a worker ${mbps(size, mt)} MB/s (${slower(mt, mp)} slower); ${findings} findings\n`,
  );
}

/** How chunks can reach a worker: shared slabs, a fresh transferred buffer per batch, or a pool of buffers transferred back and forth (ThreadedScanner's). */
type HandOff = 'shared' | 'fresh' | 'pool';
const HAND_OFFS: Record<HandOff, string> = {
  shared: '8 SharedArrayBuffer slabs of 1 MiB',
  fresh: 'a fresh 1 MiB ArrayBuffer a batch, transferred',
  pool: '8 ArrayBuffers of 1 MiB transferred there and back',
};

/**
 * The hand-off with the CSV parser alone in the worker (no tar, no disk): `chunks` copied into 1 MiB
 * batches and scanned there, 8 batches in flight at most. Wall time, and the main thread's busy time
 * (its event loop's utilisation).
 */
async function handOff(chunks: Buffer[], how: HandOff): Promise<{ ms: number; busyMs: number }> {
  const SLAB = 1 << 20;
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.csvScan).then(({ CsvCheck }) => {
      const check = new CsvCheck(44, 10, new Set(['ssn']), () => undefined);
      const shared = workerData.shared.map((s) => Buffer.from(s));
      parentPort.on('message', (m) => {
        if (m.t === 'end') return parentPort.postMessage({ t: 'end', rows: check.dataRows() });
        check.write(m.buf ? Buffer.from(m.buf, 0, m.len) : shared[m.slab].subarray(0, m.len));
        parentPort.postMessage({ t: 'free', slab: m.slab, buf: workerData.back ? m.buf : undefined }, workerData.back ? [m.buf] : []);
      });
      parentPort.postMessage({ t: 'ready' });
    });`;
  const shared = how === 'shared' ? Array.from({ length: 8 }, () => new SharedArrayBuffer(SLAB)) : [];
  const csvScan = new URL('../../daemon/results/csv-scan.js', import.meta.url).href;
  const worker = new Worker(code, { eval: true, workerData: { csvScan, shared, back: how === 'pool' } });
  const pool = how === 'pool' ? Array.from({ length: 8 }, () => new ArrayBuffer(SLAB)) : [];
  const free = shared.map((_, i) => i);
  let inFlight = 0;
  let wake: (() => void) | null = null;
  let ended: (() => void) | null = null;
  let ready: (() => void) | null = null;
  worker.on('message', (m: { t: string; slab: number; buf?: ArrayBuffer }) => {
    if (m.t === 'ready') return ready?.();
    if (m.t === 'end') return ended?.();
    inFlight -= 1;
    if (how === 'shared') free.push(m.slab);
    if (m.buf) pool.push(m.buf);
    wake?.();
    wake = null;
  });
  await new Promise<void>((resolve) => (ready = resolve));
  const elu0 = eventLoop.eventLoopUtilization();
  const t0 = performance.now();
  let slab = -1;
  let buf: ArrayBuffer | null = null;
  let view: Buffer<ArrayBufferLike> = Buffer.alloc(0);
  let fill = 0;
  const send = () => {
    if (how === 'shared') worker.postMessage({ t: 'bytes', slab, len: fill });
    else worker.postMessage({ t: 'bytes', buf, len: fill }, [buf!]);
    inFlight += 1;
    slab = -1;
    buf = null;
  };
  for (const chunk of chunks) {
    for (let at = 0; at < chunk.length; ) {
      if (slab < 0 && buf === null) {
        while (inFlight >= 8) await new Promise<void>((resolve) => (wake = resolve));
        if (how === 'shared') slab = free.pop()!;
        else buf = how === 'pool' ? pool.pop()! : new ArrayBuffer(SLAB);
        view = how === 'shared' ? Buffer.from(shared[slab]!) : Buffer.from(buf!);
        fill = 0;
      }
      const n = chunk.copy(view, fill, at);
      fill += n;
      at += n;
      if (fill === SLAB) send();
    }
    // As the read-back does: the next chunk comes on a later turn of the event loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  if (fill > 0) send();
  await new Promise<void>((resolve) => {
    ended = resolve;
    worker.postMessage({ t: 'end' });
  });
  const ms = performance.now() - t0;
  const busyMs = eventLoop.eventLoopUtilization(elu0).active;
  await worker.terminate();
  return { ms, busyMs };
}

/** The CSV copied into a created (never started) busybox container's /outputs; null when Docker does not answer. */
async function containerWith(chunks: Buffer[]): Promise<{ id: string; remove(): void } | null> {
  const engine = createDockerEngine();
  try {
    await ensureBusyboxImage(engine);
  } catch (err) {
    process.stdout.write(`\nDocker did not answer (${(err as Error).message}): the engine read-back is not measured\n`);
    return null;
  }
  const dir = await mkdtemp(join(tmpdir(), 'secd-bench-disclosure-src-'));
  await mkdir(join(dir, 'outputs'));
  await writeFile(join(dir, 'outputs', 'table.csv'), Buffer.concat(chunks));
  const id = execFileSync('docker', ['create', BUSYBOX_IMAGE, 'true'], { encoding: 'utf8' }).trim();
  execFileSync('docker', ['cp', join(dir, 'outputs'), `${id}:/outputs`]);
  await rm(dir, { recursive: true, force: true });
  return { id, remove: () => execFileSync('docker', ['rm', '-f', id]) };
}

async function main(): Promise<void> {
  const chunks = makeCsv(MEGABYTES * 1e6);
  const size = chunks.reduce((n, c) => n + c.length, 0);
  process.stdout.write(`CSV: ${(size / 1e6).toFixed(1)} MB in ${chunks.length} chunks\n`);
  await compare('in-process tar (tar-stream pack) through extractOutputsArchive', async () => tarOf(chunks, size), size);

  const container = await containerWith(chunks);
  if (container) {
    const engine = createDockerEngine();
    try {
      const tar = async () => {
        const stream = await engine.readArchive(container.id, '/outputs/.');
        if (stream === null) throw new Error('the engine has no /outputs in the benchmark container');
        return stream;
      };
      await compare('the engine\'s archive API (dockerd over its socket) through extractOutputsArchive', tar, size);
    } finally {
      container.remove();
    }
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

  process.stdout.write(`\nthe scanner alone on the same chunks (no tar, no disk), median of ${ROUNDS}: ${mbps(size, median(alone))} MB/s\n`);
  for (const how of Object.keys(HAND_OFFS) as HandOff[]) {
    const runs = [];
    for (let r = 0; r < ROUNDS; r++) runs.push(await handOff(chunks, how));
    const ms = median(runs.map((x) => x.ms));
    const busy = median(runs.map((x) => x.busyMs));
    process.stdout.write(`the parser alone in a worker, ${HAND_OFFS[how]}: ${mbps(size, ms)} MB/s, the main thread busy ${busy.toFixed(0)} ms\n`);
  }
}

await main();
