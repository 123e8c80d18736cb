/**
 * The automated disclosure checks on what a data owner would be shown: each rule flags its file with
 * a detail that names a row, a column, a size or a header, never a cell's value; CSV/TSV quoting as
 * RFC 4180 writes it, fed in any chunks (one byte at a time, random splits), gives the findings the
 * whole file gives, and the same findings as a plain, non-streaming reading of the rules.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_DISCLOSURE_CHECKS, MAX_DISCLOSURE_FINDINGS, type DisclosureChecks, type DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import { headerCells, MAX_HEADER_BYTES } from './csv-scan.js';
import { clipPath, DisclosureScanner, extensionOf, MAX_FINDING_PATH } from './disclosure-scan.js';

const checks = (over: Partial<DisclosureChecks> = {}): DisclosureChecks => ({ ...DEFAULT_DISCLOSURE_CHECKS, ...over });

/** The findings for one file fed in the given chunk sizes (cycled), or whole. */
function scan(file: string, text: string | Buffer, options: { checks?: DisclosureChecks; chunks?: number[] } = {}): DisclosureFinding[] {
  const scanner = new DisclosureScanner(options.checks ?? checks());
  const buf = typeof text === 'string' ? Buffer.from(text) : text;
  const sizes = options.chunks ?? [buf.length || 1];
  const f = scanner.file(file);
  for (let at = 0, k = 0; at < buf.length; k++) {
    const size = Math.max(1, sizes[k % sizes.length]!);
    f.write(buf.subarray(at, at + size));
    at += size;
  }
  f.end();
  return scanner.findings();
}

const rules = (found: DisclosureFinding[]) => found.map((f) => `${f.rule}: ${f.detail}`);

describe('file rules', () => {
  it('flags an extension outside the allowlist, compared lower-case on the last extension, and a file with none', () => {
    expect(rules(scan('tables/results.xlsx', 'x'))).toEqual(['extension: ".xlsx" is not an allowed extension']);
    expect(rules(scan('model.tar.gz', 'x'))).toEqual(['extension: ".gz" is not an allowed extension']);
    expect(scan('plots/Loss.PNG', 'x')).toEqual([]);
    expect(rules(scan('Makefile', 'x'))).toEqual(['extension: no file extension']);
    expect(rules(scan('.env', 'x'))).toEqual(['extension: no file extension']);
    expect(extensionOf('a.b/c')).toBeNull();
    expect(extensionOf('dir.d/x.CSV')).toBe('.csv');
  });

  it('flags a file over the size cap with its size and the cap, from the bytes or the size a tar header declares', () => {
    const small = checks({ maxFileBytes: 2048 });
    expect(rules(scan('weights.json', Buffer.alloc(2049), { checks: small }))).toEqual([
      'file_size: 2049 bytes (2 KiB), over the cap of 2048 bytes (2 KiB)',
    ]);
    expect(scan('weights.json', Buffer.alloc(2048), { checks: small })).toEqual([]);
    const scanner = new DisclosureScanner(checks());
    scanner.file('huge.txt', 17 * 1024 * 1024).end();
    expect(rules(scanner.findings())).toEqual(['file_size: 17825792 bytes (17 MiB), over the cap of 16777216 bytes (16 MiB)']);
  });

  it('a file discarded (not delivered after all) flags nothing', () => {
    const scanner = new DisclosureScanner(checks());
    const f = scanner.file('leak.xlsx', 10);
    f.write(Buffer.from('ssn\n1\n'));
    f.discard();
    expect(scanner.findings()).toEqual([]);
  });

  it('names a very long path by its start and its file name, short enough for the node\'s result message', () => {
    const deep = `${'nested/'.repeat(500)}cohort.xlsx`;
    const [finding] = scan(deep, 'x');
    expect(finding!.file).toHaveLength(MAX_FINDING_PATH);
    expect(finding!.file).toMatch(/^nested\/nested\/.*….*\/cohort\.xlsx$/);
    expect(clipPath('short/name.csv')).toBe('short/name.csv');
  });

  it('refuses checks that are not checks, naming the field', () => {
    expect(() => new DisclosureScanner({ ...checks(), maxCsvRows: -1 })).toThrow(/invalid checks: maxCsvRows/);
  });
});

describe('CSV and TSV rules', () => {
  it('counts data rows without the header, one finding per file over the cap', () => {
    const rows = (n: number) => `a,b\n${Array.from({ length: n }, (_, i) => `x${i},y\n`).join('')}`;
    expect(scan('t.csv', rows(3), { checks: checks({ maxCsvRows: 3 }) })).toEqual([]);
    expect(scan('t.csv', rows(4), { checks: checks({ maxCsvRows: 3 }) })).toEqual([{ file: 't.csv', rule: 'csv_rows', detail: '4 data rows, over the cap of 3' }]);
    // Newlines inside quotes, CRLF, empty lines and a last row without a newline.
    const tricky = 'a,b\r\n"x\r\ny",1\r\n\r\n\n"q ""w"" e","z"\r\nlast,row';
    expect(rules(scan('t.csv', tricky, { checks: checks({ maxCsvRows: 2, minCellCount: 0 }) }))).toEqual(['csv_rows: 3 data rows, over the cap of 2']);
    expect(scan('notes.txt', rows(10), { checks: checks({ maxCsvRows: 3 }) })).toEqual([]);
  });

  it('flags a forbidden header column, trimmed and case-insensitive, quoted or not, past a BOM', () => {
    expect(rules(scan('cohort.csv', '\ufeffPatient_ID, age ," SSN ",personnummer_x\n1,40,2,3\n', { checks: checks({ minCellCount: 0 }) }))).toEqual([
      'forbidden_column: column 1 "Patient_ID" is a forbidden column',
      'forbidden_column: column 3 "SSN" is a forbidden column',
    ]);
    expect(rules(scan('cohort.tsv', 'id\tssn\n', {}))).toEqual(['forbidden_column: column 2 "ssn" is a forbidden column']);
    // A forbidden name in the data is data, not a header.
    expect(scan('cohort.csv', 'name\nssn\n')).toEqual([]);
  });

  it('flags positive counts below min_cell_count by row and column name, never by value', () => {
    const csv = 'region,count,note\nnorth,3,ok\nsouth, 12 ,"7"\neast,"  09 ",x\nwest,0,-3\n';
    expect(rules(scan('counts.csv', csv))).toEqual([
      'small_cell: row 1, column "count": a count below 10',
      'small_cell: row 2, column "note": a count below 10',
      'small_cell: row 3, column "count": a count below 10',
    ]);
    // Not counts: zero, signs, decimals, digits with text, two numbers in one cell, a doubled quote.
    const notCounts = 'v\n0\n-3\n7.0\n7a\n7 7\n"7"""\n1e1\n';
    expect(scan('v.csv', notCounts)).toEqual([]);
    expect(scan('counts.csv', csv, { checks: checks({ minCellCount: 0 }) })).toEqual([]);
    // A column past the header's names is named by its position.
    expect(rules(scan('w.csv', 'a\nx,y,2\n'))).toEqual(['small_cell: row 1, column #3: a count below 10']);
  });

  it('lists ten small cells per file, then says how many more that file has', () => {
    const csv = `n\n${'5\n'.repeat(25)}`;
    const found = rules(scan('many.csv', csv));
    expect(found).toHaveLength(11);
    expect(found[9]).toBe('small_cell: row 10, column "n": a count below 10');
    expect(found[10]).toBe('small_cell: 15 more cells with a count below 10 in this file');
  });

  it('a TSV is tab-separated, and a tab inside a quoted cell is the cell\'s', () => {
    expect(rules(scan('t.tsv', 'a\tb\n1\t"x\ty"\n"2\t"\tz\n'))).toEqual([
      'small_cell: row 1, column "a": a count below 10',
      'small_cell: row 2, column "a": a count below 10',
    ]);
  });

  it('keeps at most 64 KiB of a header: names past it go unnamed, and memory stays bounded', () => {
    const long = `${'c,'.repeat(MAX_HEADER_BYTES)}ssn\n${',3'.repeat(1)}\n`;
    const found = rules(scan('wide.csv', long, { chunks: [4096] }));
    // The 32768 names that fit are kept; `ssn`, past the cap, goes unnamed and unflagged.
    expect(found).toEqual(['small_cell: row 1, column "c": a count below 10']);
    expect(headerCells(Buffer.from('a,"b,""c""",d'), 44, false)).toEqual(['a', 'b,"c"', 'd']);
    expect(headerCells(Buffer.from('a,bb'), 44, true)).toEqual(['a']);
  });
});

describe('the findings of a run', () => {
  it('lists at most MAX_DISCLOSURE_FINDINGS, then one more finding with the count left out', () => {
    const scanner = new DisclosureScanner(checks());
    for (let i = 0; i < MAX_DISCLOSURE_FINDINGS + 30; i++) scanner.scanBuffer(`f${i}.bin`, Buffer.from('x'));
    const found = scanner.findings();
    expect(found).toHaveLength(MAX_DISCLOSURE_FINDINGS + 1);
    expect(found.at(-1)).toEqual({ file: '*', rule: 'more', detail: '30 more findings not listed' });
    // Carried over (a journal's findings after a restart), the count left out carries too.
    const resumed = new DisclosureScanner(checks());
    resumed.add(found);
    resumed.scanBuffer('_secd/run.logx', Buffer.from('x'));
    expect(resumed.findings().at(-1)).toEqual({ file: '*', rule: 'more', detail: '31 more findings not listed' });
  });
});

// A plain reading of the rules, one whole string at a time: what the streaming parser must agree with.
function referenceCsv(text: string, delim: string, min: number, forbidden: string[]): Array<Omit<DisclosureFinding, 'file'>> {
  const records: string[][] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let fieldStart = true;
  let content = false;
  const endField = () => {
    fields.push(field);
    field = '';
    fieldStart = true;
  };
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text[i]! : null;
    if (quoted && c !== null) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
      continue;
    }
    quoted = false;
    if (c === null || c === '\n') {
      if (c === null && !content && fieldStart) break;
      endField();
      if (content) records.push(fields);
      fields = [];
      content = false;
      continue;
    }
    if (c === delim) {
      endField();
      content = true;
      continue;
    }
    if (c === '"' && fieldStart) {
      quoted = true;
      fieldStart = false;
      content = true;
      continue;
    }
    fieldStart = false;
    if (c !== '\r') content = true;
    field += c;
  }
  const out: Array<Omit<DisclosureFinding, 'file'>> = [];
  const header = (records[0] ?? []).map((h) => h.trim());
  header.forEach((h, i) => {
    if (forbidden.includes(h.toLowerCase())) out.push({ rule: 'forbidden_column', detail: `column ${i + 1} ${JSON.stringify(h)} is a forbidden column` });
  });
  let small = 0;
  records.slice(1).forEach((row, r) =>
    row.forEach((cell, c) => {
      const t = cell.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
      if (min > 0 && /^\d+$/.test(t) && Number(t) >= 1 && Number(t) < min && ++small <= 10) {
        out.push({ rule: 'small_cell', detail: `row ${r + 1}, column ${header[c] ? JSON.stringify(header[c]) : `#${c + 1}`}: a count below ${min}` });
      }
    }),
  );
  const rows = Math.max(0, records.length - 1);
  if (rows > 3) out.push({ rule: 'csv_rows', detail: `${rows} data rows, over the cap of 3` });
  if (small > 10) out.push({ rule: 'small_cell', detail: `${small - 10} more cells with a count below ${min} in this file` });
  return out;
}

describe('streaming agrees with a whole-file reading, however the bytes are split', () => {
  const cell = fc.constantFrom('3', ' 7 ', '"5"', '0', '12', '9', 'abc', '"a,b"', '"line\nbreak"', '"line\r\nbreak"', '"say ""hi"""', '"""7"""', '""', '', '007', '-3', '7.0', ' 5x', '"\t4\t"', 'x"y', '"2"z', 'ssn', 'é1');
  const headerName = fc.constantFrom('count', ' SSN ', 'patient_id', '"n,1"', 'Región', 'x', '');
  const csv = fc.record({
    delim: fc.constantFrom(',', '\t'),
    eol: fc.constantFrom('\n', '\r\n'),
    header: fc.array(headerName, { minLength: 1, maxLength: 4 }),
    rows: fc.array(fc.array(cell, { minLength: 1, maxLength: 5 }), { maxLength: 14 }),
    blankLines: fc.array(fc.nat(16), { maxLength: 3 }),
    trailing: fc.boolean(),
  });
  const toText = (c: { delim: string; eol: string; header: string[]; rows: string[][]; blankLines: number[]; trailing: boolean }) => {
    const lines = [c.header.join(c.delim), ...c.rows.map((r) => r.join(c.delim))];
    for (const at of c.blankLines) lines.splice(Math.min(at, lines.length), 0, '');
    return lines.join(c.eol) + (c.trailing ? c.eol : '');
  };

  it('one byte at a time, random splits and the whole file give the same findings as the plain reading', () => {
    fc.assert(
      fc.property(csv, fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }), (c, splits) => {
        const text = toText(c);
        const file = c.delim === ',' ? 'x.csv' : 'x.tsv';
        const opts = { checks: checks({ maxCsvRows: 3 }) };
        const whole = scan(file, text, opts);
        expect(scan(file, text, { ...opts, chunks: [1] })).toEqual(whole);
        expect(scan(file, text, { ...opts, chunks: splits })).toEqual(whole);
        expect(whole.map(({ rule, detail }) => ({ rule, detail }))).toEqual(referenceCsv(text, c.delim, 10, ['patient_id', 'personnummer', 'ssn']));
      }),
      { numRuns: 400 },
    );
  });

  it('a large file in 64 KiB chunks with CRLFs split between chunks counts every row once', () => {
    const row = 'abc,"d\r\ne",12\r\n';
    const text = `h1,h2,h3\r\n${row.repeat(100_000)}`;
    const found = scan('big.csv', text, { checks: checks({ maxCsvRows: 99_999, maxFileBytes: 1 << 30 }), chunks: [65_536, 7, 65_535] });
    expect(rules(found)).toEqual(['csv_rows: 100000 data rows, over the cap of 99999']);
  });
});
