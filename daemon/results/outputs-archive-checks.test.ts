/**
 * Collecting /outputs with the disclosure checks on the way: every file delivered, and only those, is
 * streamed through them as it is written, on the event loop or in a worker thread, with the same
 * findings either way.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractOutputsArchive } from './outputs-archive.js';
import { archive, type Entry } from './outputs-archive-test-kit.js';
import { DisclosureScanner } from './disclosure-scan.js';
import { INLINE_BYTES, ThreadedScanner } from './threaded-scanner.js';
import { DEFAULT_DISCLOSURE_CHECKS } from '../../scheduler/contract/disclosure.js';

let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-outputs-archive-checks-'));
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('extractOutputsArchive with the disclosure checks', () => {
  it('streams every delivered file through the checks, and only those: files left out, links and reserved names flag nothing', async () => {
    const dest = path.join(root, 'checked');
    const scanner = new DisclosureScanner({ ...DEFAULT_DISCLOSURE_CHECKS, maxFileBytes: 64, maxCsvRows: 2 });
    const rows = ['region,SSN,n', ...Array.from({ length: 2000 }, (_, i) => `r${i},x,${i === 1500 ? 4 : 40}`)].join('\n');
    const manifest = await extractOutputsArchive(
      archive([
        { name: './tables/', type: 'directory' },
        { name: './tables/cohort.csv', body: rows },
        { name: './summary.xlsx', body: 'PK' },
        { name: './clean.csv', body: 'region,n\nnorth,40\n' },
        { name: './too-big.xlsx', body: 'z'.repeat(30_000) },
        { name: './_secd/', type: 'directory' },
        { name: './_secd/run.json', body: '{}' },
        { name: './link.xlsx', type: 'symlink', linkname: '/etc/passwd' },
      ]),
      dest,
      { maxFileBytes: 25_000, maxTotalBytes: 200_000 },
      { isReserved: (rel) => rel === '_secd', scanner },
    );
    expect(manifest.files).toBe(3);
    expect(manifest.leftOut.map((l) => l.path)).toEqual(['too-big.xlsx', '_secd', 'link.xlsx']);
    expect(scanner.findings()).toEqual([
      { file: 'tables/cohort.csv', rule: 'forbidden_column', detail: 'column 2 "SSN" is a forbidden column' },
      { file: 'tables/cohort.csv', rule: 'small_cell', detail: 'row 1501, column "n": a count below 10' },
      { file: 'tables/cohort.csv', rule: 'file_size', detail: `${Buffer.byteLength(rows)} bytes (${Number((Buffer.byteLength(rows) / 1024).toPrecision(3))} KiB), over the cap of 64 bytes` },
      { file: 'tables/cohort.csv', rule: 'csv_rows', detail: '2000 data rows, over the cap of 2' },
      { file: 'summary.xlsx', rule: 'extension', detail: '".xlsx" is not an allowed extension' },
    ]);
    // The checks read the bytes; what is written is the same file.
    expect(fs.readFileSync(path.join(dest, 'tables/cohort.csv'), 'utf8')).toBe(rows);
  });
});

describe('extractOutputsArchive with the checks in a worker thread', () => {
  it('a large CSV read back through a ThreadedScanner is written whole and flags what the event loop flags', async () => {
    const rows = ['region,ssn,n', ...Array.from({ length: 150_000 }, (_, i) => `r${i},x,${i === 120_000 ? 4 : 40 + (i % 9)}`)].join('\n');
    const entries: Entry[] = [
      { name: './summary.xlsx', body: 'PK' },
      { name: './tables/', type: 'directory' },
      { name: './tables/cohort.csv', body: rows },
      { name: './notes.txt', body: 'fine' },
    ];
    const big = { maxFileBytes: 16 << 20, maxTotalBytes: 16 << 20 };
    const checks = { ...DEFAULT_DISCLOSURE_CHECKS, maxCsvRows: 100_000 };
    const workers: unknown[] = [];
    // The node's threshold, whatever this machine's load: a 1.5 MB CSV goes to the worker.
    const threaded = new ThreadedScanner(checks, { inlineBytes: INLINE_BYTES, onWorker: (w) => workers.push(w) });
    const inline = new DisclosureScanner(checks);
    const dest = path.join(root, 'threaded');
    const manifest = await extractOutputsArchive(archive(entries), dest, big, { scanner: threaded });
    await extractOutputsArchive(archive(entries), path.join(root, 'threaded-inline'), big, { scanner: inline });
    expect(workers).toHaveLength(1);
    expect(manifest).toEqual({ files: 3, bytes: Buffer.byteLength(rows) + 6, leftOut: [] });
    expect(fs.readFileSync(path.join(dest, 'tables/cohort.csv'), 'utf8')).toBe(rows);
    const found = await threaded.findings();
    expect(found).toEqual(inline.findings());
    expect(found.map((f) => `${f.file} ${f.rule}`)).toEqual([
      'summary.xlsx extension',
      'tables/cohort.csv forbidden_column',
      'tables/cohort.csv small_cell',
      'tables/cohort.csv csv_rows',
    ]);
  });
});
