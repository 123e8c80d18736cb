/**
 * The disclosure checks in a worker thread find exactly what the same checks find on the event loop,
 * in the same order, however the bytes come; small outputs never start a worker; the read-back is
 * made to wait once 8 MiB are in flight; and a worker that dies costs no outputs, only findings that
 * say which files went unchecked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { DEFAULT_DISCLOSURE_CHECKS, type DisclosureChecks, type DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import { DisclosureScanner, type OutputsScanner } from './disclosure-scan.js';
import { coreToSpare, INLINE_BYTES, ThreadedScanner } from './threaded-scanner.js';

const checks: DisclosureChecks = { ...DEFAULT_DISCLOSURE_CHECKS, maxCsvRows: 3 };

type File = { name: string; body: Buffer; splits: number[]; discard?: boolean };

/** Feeds the files to `scanner` in the given splits, waiting whenever a write asks to. */
async function feed(scanner: OutputsScanner, files: File[]): Promise<void> {
  for (const f of files) {
    const scan = scanner.file(f.name, f.body.length);
    for (let at = 0, k = 0; at < f.body.length; k++) {
      const size = Math.max(1, f.splits[k % f.splits.length]!);
      await scan.write(f.body.subarray(at, at + size));
      at += size;
    }
    if (f.discard) scan.discard();
    else scan.end();
  }
}

async function onEventLoop(files: File[], c = checks): Promise<DisclosureFinding[]> {
  const scanner = new DisclosureScanner(c);
  await feed(scanner, files);
  return scanner.findings();
}

/** A CSV of `rows` rows with a forbidden column and a small count every 1000th row. */
function bigCsv(rows: number): Buffer {
  const lines = ['id,SSN,count,note'];
  for (let i = 1; i <= rows; i++) lines.push(`${i},x,${i % 1000 === 0 ? 3 : 40 + (i % 50)},"visit, ${i % 13}"`);
  return Buffer.from(`${lines.join('\r\n')}\r\n`);
}

describe('ThreadedScanner', () => {
  it('a large CSV is checked in a worker, and the run\'s findings are the event loop\'s, in the order of the files', async () => {
    const files: File[] = [
      { name: 'summary.xlsx', body: Buffer.from('PK'), splits: [1] },
      { name: 'tables/cohort.csv', body: bigCsv(60_000), splits: [65_536, 7, 16_384] },
      { name: 'model.bin', body: Buffer.alloc(3 << 20), splits: [1 << 20] },
      { name: 'dropped.csv', body: Buffer.from('ssn\n1\n'), splits: [2], discard: true },
      { name: 'counts.tsv', body: Buffer.from('region\tn\nnorth\t4\n'), splits: [3] },
    ];
    const workers: Worker[] = [];
    // The node's threshold, whatever this machine's load (with no core to spare it checks inline).
    const threaded = new ThreadedScanner(checks, { inlineBytes: INLINE_BYTES, onWorker: (w) => workers.push(w) });
    await feed(threaded, files);
    const found = await threaded.findings();
    expect(workers).toHaveLength(1);
    expect(found).toEqual(await onEventLoop(files));
    expect(found.map((f) => `${f.file} ${f.rule}`)).toEqual([
      'summary.xlsx extension',
      'tables/cohort.csv forbidden_column',
      ...Array.from({ length: 10 }, () => 'tables/cohort.csv small_cell'),
      'tables/cohort.csv csv_rows',
      'tables/cohort.csv small_cell',
      'model.bin extension',
      'counts.tsv small_cell',
    ]);
  });

  it('small outputs are checked on the event loop: no worker starts', async () => {
    const workers: Worker[] = [];
    const files: File[] = [
      { name: 'a.csv', body: Buffer.from('ssn,n\nx,3\n'), splits: [4] },
      { name: 'weights.pt', body: Buffer.alloc(64 << 20), splits: [8 << 20] },
    ];
    const threaded = new ThreadedScanner(checks, { inlineBytes: INLINE_BYTES, onWorker: (w) => workers.push(w) });
    await feed(threaded, files);
    expect(await threaded.findings()).toEqual(await onEventLoop(files));
    // 64 MiB of weights started no worker either: only a CSV/TSV's bytes are ever read.
    expect(workers).toEqual([]);
  });

  it('any CSV/TSV text in any splits gives the event loop\'s findings', async () => {
    const cell = fc.constantFrom('3', ' 7 ', '"5"', '0', '12', 'abc', '"a,b"', '"line\nbreak"', '"say ""hi"""', '', '007', '"\t4\t"', 'ssn', 'é1');
    const file = fc.record({
      tsv: fc.boolean(),
      rows: fc.array(fc.array(cell, { minLength: 1, maxLength: 5 }), { maxLength: 30 }),
      splits: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 6 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(file, { minLength: 1, maxLength: 25 }), async (specs) => {
        const files: File[] = specs.map((s, i) => ({
          name: `f${i}.${s.tsv ? 'tsv' : 'csv'}`,
          body: Buffer.from(s.rows.map((r) => r.join(s.tsv ? '\t' : ',')).join('\n')),
          splits: s.splits,
        }));
        // Every file goes to the worker, however small.
        const threaded = new ThreadedScanner({ ...checks, maxCsvRows: 10 }, { inlineBytes: 0 });
        await feed(threaded, files);
        expect(await threaded.findings()).toEqual(await onEventLoop(files, { ...checks, maxCsvRows: 10 }));
      }),
      { numRuns: 6 },
    );
  });

  it('makes the read-back wait once 8 MiB are in flight, and goes on when the worker has scanned them', async () => {
    const threaded = new ThreadedScanner(checks, { inlineBytes: 0 });
    const scan = threaded.file('wide.csv', 12 << 20);
    const mib = Buffer.alloc(1 << 20, '40\n');
    // The worker cannot answer while this loop holds the event loop: the ninth MiB has no slab.
    const answers = Array.from({ length: 9 }, () => scan.write(mib));
    expect(answers.slice(0, 8)).toEqual(Array.from({ length: 8 }, () => undefined));
    expect(answers[8]).toBeInstanceOf(Promise);
    await answers[8];
    for (let i = 0; i < 3; i++) await scan.write(mib);
    scan.end();
    // Every byte was scanned once, in order: the findings of the same 12 MiB on the event loop.
    const inline = new DisclosureScanner(checks);
    const same = inline.file('wide.csv', 12 << 20);
    for (let i = 0; i < 12; i++) same.write(mib);
    same.end();
    expect(await threaded.findings()).toEqual(inline.findings());
    expect(inline.findings().map((f) => f.rule)).toEqual(['small_cell', 'csv_rows']);
  });

  it('a worker that dies part way loses no bytes of the read-back: its files are named as not checked, later files are checked inline', async () => {
    const workers: Worker[] = [];
    const threaded = new ThreadedScanner(checks, { inlineBytes: 0, onWorker: (w) => workers.push(w) });
    const before = threaded.file('early.csv', 10);
    await before.write(Buffer.from('ssn\n3\n'));
    before.end();
    const dying = threaded.file('tables/cohort.csv');
    const body = bigCsv(20_000);
    await dying.write(body.subarray(0, 100_000));
    await workers[0]!.terminate();
    // Every write still returns, and soon: the read-back is never left waiting for a dead worker.
    for (let at = 100_000; at < body.length; at += 65_536) await dying.write(body.subarray(at, at + 65_536));
    dying.end();
    // Checked on the event loop, however large: no second worker is started.
    await feed(threaded, [{ name: 'later.csv', body: Buffer.concat([Buffer.from('patient_id\n'), bigCsv(20_000)]), splits: [65_536] }]);
    const found = await threaded.findings();
    expect(workers).toHaveLength(1);
    expect(found).toEqual([
      { file: 'early.csv', rule: 'more', detail: expect.stringMatching(/^not checked: the disclosure worker exited \(code \d+\) before it answered$/) },
      { file: 'tables/cohort.csv', rule: 'more', detail: expect.stringMatching(/^not checked: the disclosure worker exited/) },
      { file: 'later.csv', rule: 'forbidden_column', detail: 'column 1 "patient_id" is a forbidden column' },
      ...(await onEventLoop([{ name: 'later.csv', body: Buffer.concat([Buffer.from('patient_id\n'), bigCsv(20_000)]), splits: [65_536] }])).slice(1),
    ]);
  });

  it('starts a worker only where it has a core to itself: more than one, and the last minute\'s load leaves one free', () => {
    expect(coreToSpare(1, 0)).toBe(false);
    expect(coreToSpare(2, 0.9)).toBe(true);
    expect(coreToSpare(2, 4.3)).toBe(false);
    expect(coreToSpare(16, 3)).toBe(true);
    expect(coreToSpare(16, 15.5)).toBe(false);
  });

  it('refuses checks that are not checks, naming the field, before a worker starts', () => {
    expect(() => new ThreadedScanner({ ...checks, minCellCount: -1 })).toThrow(/invalid checks: minCellCount/);
  });

  it('the built node starts its compiled worker (dist/, as the CLI runs)', () => {
    const built = resolve(import.meta.dirname, '../../dist/daemon/results/threaded-scanner.js');
    expect(existsSync(built), `${built} is missing: run npm run build first`).toBe(true);
    const script = `
      const { ThreadedScanner } = await import(${JSON.stringify(built)});
      const s = new ThreadedScanner(${JSON.stringify(checks)}, { inlineBytes: 0, onWorker: () => process.stdout.write('worker ') });
      const f = s.file('cohort.csv');
      await f.write(Buffer.from('ssn,n\\nx,3\\n'));
      f.end();
      process.stdout.write(JSON.stringify(await s.findings()));`;
    const dir = mkdtempSync(join(tmpdir(), 'secd-threaded-scanner-'));
    const file = join(dir, 'scan.mjs');
    writeFileSync(file, script);
    const out = execFileSync(process.execPath, [file], { encoding: 'utf8' });
    rmSync(dir, { recursive: true, force: true });
    expect(out).toBe(
      `worker ${JSON.stringify([
        { file: 'cohort.csv', rule: 'forbidden_column', detail: 'column 1 "ssn" is a forbidden column' },
        { file: 'cohort.csv', rule: 'small_cell', detail: 'row 1, column "n": a count below 10' },
      ])}`,
    );
  });
});
