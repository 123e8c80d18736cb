/**
 * The automated disclosure checks as a researcher meets them in `secd run <dir>`: the real CLI (built
 * into dist/ by `npm test`), real Docker, the default checks (DESIGN §10). A run writes one output for
 * each rule and a clean CSV; `_secd/run.json` flags each rule's file, leaves the clean one alone, and
 * no finding carries a cell's value; the CLI prints what output review would flag.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import type { DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import type { RunReport } from '../../scheduler/contract/run-spec.js';
import { runSecd } from '../support/secd-cli.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../support/test-images.js';

// Text cells no finding may quote: the checks name rows and columns, never what is in them.
const SECRET_CELLS = ['Zebra-Ward-7731', 'Okapi-Clinic-5509', '19750101-1234'];

const RUN_SH = `set -e
out="$OUTPUT_PATH"
mkdir -p "$out/tables"
# A forbidden column and small counts (3 and 7) among large ones (the value 42 is never small).
printf 'ward,patient_id,n\\r\\n"${SECRET_CELLS[0]}, east","${SECRET_CELLS[2]}",3\\r\\n${SECRET_CELLS[1]},p2,42\\r\\n"multi\\nline","p3"," 7 "\\r\\n' > "$out/tables/cohort.csv"
# A spreadsheet: not an allowed extension.
printf 'PK' > "$out/summary.xlsx"
# 6000 data rows: over the default cap of 5000 (no small cells: every id and count is 1001 or more).
seq 1001 7000 | awk 'BEGIN { print "id,count" } { print $1 "," $1 + 100 }' > "$out/tables/long.csv"
# 17 MiB: over the default 16 MiB cap.
head -c 17825792 /dev/zero | tr '\\0' 'a' > "$out/dump.txt"
# A clean table: counts at or above 10, no forbidden column.
printf 'region,n\\nnorth,40\\nsouth,10\\n' > "$out/tables/clean.csv"
echo "wrote the tables"
`;

describe('disclosure checks on a local run', () => {
  let root: string;

  beforeAll(async () => {
    await ensureBusyboxImage(createDockerEngine());
    root = await mkdtemp(join(tmpdir(), 'secd-disclosure-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('flags each rule on its own file, not the clean table, never quoting a cell, and says so after the run', async () => {
    const dir = join(root, 'cohort-study');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM ${BUSYBOX_IMAGE}\nCOPY run.sh /run.sh\nCMD ["/bin/sh", "/run.sh"]\n`);
    await writeFile(join(dir, 'run.sh'), RUN_SH);
    await writeFile(join(dir, 'secd.yml'), 'runfor: 0.05\n');

    const result = await runSecd(['run', dir], { cwd: root });

    expect(result.code, result.stderr + result.stdout).toBe(0);
    const done = result.stdout.split('\n').find((l) => / succeeded — outputs in /.test(l))!;
    const folder = done.split(' — outputs in ')[1]!;
    // Every output was delivered: a local run is checked, never held.
    expect((await readFile(join(folder, 'summary.xlsx'), 'utf8'))).toBe('PK');
    const report = JSON.parse(await readFile(join(folder, '_secd/run.json'), 'utf8')) as RunReport;
    expect(report.release).toBe('direct');
    const found = report.disclosure ?? [];
    const of = (file: string) => found.filter((f) => f.file === file).map((f) => `${f.rule}: ${f.detail}`);

    expect(of('tables/cohort.csv')).toEqual([
      'forbidden_column: column 2 "patient_id" is a forbidden column',
      'small_cell: row 1, column "n": a count below 10',
      'small_cell: row 3, column "n": a count below 10',
    ]);
    expect(of('summary.xlsx')).toEqual(['extension: ".xlsx" is not an allowed extension']);
    expect(of('tables/long.csv')).toEqual(['csv_rows: 6000 data rows, over the cap of 5000']);
    expect(of('dump.txt')).toEqual(['file_size: 17825792 bytes (17 MiB), over the cap of 16777216 bytes (16 MiB)']);
    expect(of('tables/clean.csv')).toEqual([]);
    // The logs were checked too, and are clean.
    expect(found.every((f) => !f.file.startsWith('_secd/'))).toBe(true);
    expect(found).toHaveLength(6);

    // A finding names a row, a column, a size or a header: every detail has one of these shapes.
    const shapes = [/^column \d+ "[^"]+" is a forbidden column$/, /^row \d+, column "[^"]+": a count below 10$/, /^"\.[a-z]+" is not an allowed extension$/, /^\d+ data rows, over the cap of \d+$/, /^\d+ bytes \([\d.]+ MiB\), over the cap of \d+ bytes \(16 MiB\)$/];
    for (const f of found) expect(shapes.some((s) => s.test(f.detail)), f.detail).toBe(true);
    const text = JSON.stringify(found);
    for (const cell of [...SECRET_CELLS, 'multi', 'p2', 'p3']) expect(text).not.toContain(cell);

    // The CLI says what output review would flag, one line per finding, after the run's own line.
    const lines = result.stdout.trim().split('\n');
    const flagged = lines.slice(lines.indexOf(done) + 1);
    expect(flagged).toEqual(found.map((f: DisclosureFinding) => `secd: would be flagged at output review: ${f.file}: ${f.rule} — ${f.detail}`));
  });

  it('a run with clean outputs prints no findings', async () => {
    const dir = join(root, 'clean-study');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM ${BUSYBOX_IMAGE}\nCMD ["/bin/sh", "-c", "printf 'region,n\\\\nnorth,40\\\\n' > $OUTPUT_PATH/table.csv"]\n`);

    const result = await runSecd(['run', dir], { cwd: root });

    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stdout).not.toContain('would be flagged');
    const last = result.stdout.trim().split('\n').at(-1)!;
    const folder = last.split(' — outputs in ')[1]!;
    expect(await readFile(join(folder, 'table.csv'), 'utf8')).toBe('region,n\nnorth,40\n');
    expect(JSON.parse(await readFile(join(folder, '_secd/run.json'), 'utf8'))).toMatchObject({ disclosure: [] });
  });
});
