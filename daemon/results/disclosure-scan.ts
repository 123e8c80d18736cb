/**
 * The automated disclosure checks (DESIGN §10), run on every file of a run's outputs and on its logs
 * while they are read back: an extension outside the allowlist, a file over the size cap, a CSV/TSV
 * with more data rows than the cap, a forbidden column in a CSV/TSV header, and the small-cell rule (a
 * cell holding a positive integer below `minCellCount`).
 *
 * A finding names the file, the rule and a row, a column, a size or a header name — never a cell's
 * value — so it can go into run.json, a merge request or a log as it is.
 *
 * Streaming: a file is fed in chunks as they arrive (`file()` → `write()`… → `end()`), each byte looked
 * at once and nothing kept but the parser's state and the header (at most 64 KiB of it): a 1 GiB output
 * costs the same memory as a 1 KiB one and is never read twice. The CSV parser is a byte loop over the
 * Buffer (RFC 4180: quoted fields with delimiters, doubled quotes and newlines, CRLF; a chunk may end
 * anywhere, inside a quote or between the two bytes of a CRLF). No string is made for a data cell: the
 * small-cell rule reads digits off the bytes, and a cell that cannot be a count is skipped to its
 * delimiter in a two-comparison loop (a quoted one with indexOf). TSV is the same parser with a tab,
 * quotes included, as the common TSV writers and readers quote.
 *
 * Lenient where RFC 4180 is silent or strict: a quote inside an unquoted field is a character; bytes
 * after a closing quote belong to the field; an empty line (or a lone CR) is no record; a quote left
 * open at the end of the file ends there. Cells are trimmed (spaces, tabs, CR, LF) before the
 * small-cell rule looks at them, so ` 7 ` and `"7"` are counts and `7a`, `7 7`, `0`, `-3`, `7.0` are not.
 * Benchmark: test/bench/disclosure-checks.ts (`npm run bench:disclosure`).
 */
import { posix } from 'node:path';
import {
  disclosureChecksSchema,
  MAX_DISCLOSURE_FINDINGS,
  type DisclosureChecks,
  type DisclosureFinding,
} from '../../scheduler/contract/disclosure.js';

/** Small-cell findings listed per file; the rest of that file's are summed in one more finding. */
export const MAX_SMALL_CELL_FINDINGS_PER_FILE = 10;
/** Most bytes of a CSV/TSV header kept to read its column names (a longer header's tail goes unnamed). */
export const MAX_HEADER_BYTES = 64 * 1024;

/** One file being scanned: its bytes in order, then `end()`; `discard()` when the file is not delivered after all. */
export interface DisclosureFileScan {
  write(chunk: Buffer): void;
  /** The file is complete: its findings join the scanner's. */
  end(): void;
  /** The file was not delivered (a cap, a broken stream): whatever it would have flagged is forgotten. */
  discard(): void;
}

/** What extractOutputsArchive needs of a scanner. */
export interface OutputsScanner {
  file(relPath: string, declaredSize?: number): DisclosureFileScan;
}

/** Runs the checks on any number of files and keeps the first MAX_DISCLOSURE_FINDINGS findings. */
export class DisclosureScanner implements OutputsScanner {
  private readonly listed: DisclosureFinding[] = [];
  private omitted = 0;
  private readonly allowed: ReadonlySet<string>;
  private readonly forbidden: ReadonlySet<string>;
  private readonly checks: DisclosureChecks;

  constructor(checks: DisclosureChecks) {
    const parsed = disclosureChecksSchema.safeParse(checks);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`DisclosureScanner: invalid checks: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
    }
    this.checks = parsed.data;
    this.allowed = new Set(this.checks.allowedExtensions.map((e) => e.toLowerCase()));
    this.forbidden = new Set(this.checks.forbiddenColumns.map((c) => c.trim().toLowerCase()));
  }

  /** Starts scanning `relPath` (relative to /outputs, or `_secd/run.log`); `declaredSize` from a tar header, when known. */
  file(relPath: string, declaredSize?: number): DisclosureFileScan {
    return new FileScan(relPath, declaredSize, this.checks, this.allowed, this.forbidden, (found, extra) => this.add(found, extra));
  }

  /** Scans a file held whole in memory (the logs, already capped). */
  scanBuffer(relPath: string, buf: Buffer): void {
    const scan = this.file(relPath, buf.length);
    scan.write(buf);
    scan.end();
  }

  /**
   * Adds findings made earlier (a journal's, after a restart) ahead of those still to come; a `more`
   * summary among them adds its count to the findings left out.
   */
  add(found: readonly DisclosureFinding[], extraOmitted = 0): void {
    this.omitted += extraOmitted;
    for (const f of found) {
      if (f.rule === 'more' && f.file === '*') this.omitted += Number.parseInt(f.detail, 10) || 0;
      else if (this.listed.length < MAX_DISCLOSURE_FINDINGS) this.listed.push(f);
      else this.omitted += 1;
    }
  }

  /** Everything flagged so far: at most MAX_DISCLOSURE_FINDINGS, then one `more` finding saying how many were left out. */
  findings(): DisclosureFinding[] {
    const out = [...this.listed];
    if (this.omitted > 0) out.push({ file: '*', rule: 'more', detail: `${this.omitted} more findings not listed` });
    return out;
  }
}

type Commit = (found: DisclosureFinding[], extra: number) => void;

class FileScan implements DisclosureFileScan {
  private bytes = 0;
  private readonly pending: DisclosureFinding[] = [];
  private extra = 0;
  private readonly csv: CsvCheck | null;
  private done = false;

  constructor(
    private readonly file: string,
    private readonly declaredSize: number | undefined,
    private readonly checks: DisclosureChecks,
    allowed: ReadonlySet<string>,
    forbidden: ReadonlySet<string>,
    private readonly commit: Commit,
  ) {
    const ext = extensionOf(file);
    if (ext === null) this.flag('extension', 'no file extension');
    else if (!allowed.has(ext)) this.flag('extension', `${JSON.stringify(clip(ext, 40))} is not an allowed extension`);
    this.csv =
      ext === '.csv' || ext === '.tsv'
        ? new CsvCheck(ext === '.tsv' ? TAB : COMMA, checks.minCellCount, forbidden, (rule, detail) => this.flag(rule, detail))
        : null;
  }

  write(chunk: Buffer): void {
    if (this.done) throw new Error(`DisclosureScanner: ${this.file} was written after its end`);
    this.bytes += chunk.length;
    this.csv?.write(chunk);
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    const size = Math.max(this.bytes, this.declaredSize ?? 0);
    if (size > this.checks.maxFileBytes) {
      this.flag('file_size', `${formatBytes(size)}, over the cap of ${formatBytes(this.checks.maxFileBytes)}`);
    }
    if (this.csv) {
      this.csv.end();
      const rows = this.csv.dataRows();
      if (rows > this.checks.maxCsvRows) this.flag('csv_rows', `${rows} data rows, over the cap of ${this.checks.maxCsvRows}`);
      const more = this.csv.smallCells - MAX_SMALL_CELL_FINDINGS_PER_FILE;
      if (more > 0) this.flag('small_cell', `${more} more cells with a count below ${this.checks.minCellCount} in this file`);
    }
    this.commit(this.pending, this.extra);
  }

  discard(): void {
    this.done = true;
    this.pending.length = 0;
  }

  private flag(rule: DisclosureFinding['rule'], detail: string): void {
    if (this.pending.length < MAX_DISCLOSURE_FINDINGS) this.pending.push({ file: clip(this.file, 4096), rule, detail: clip(detail, 500) });
    else this.extra += 1;
  }
}

/** The lower-case last `.ext` of the file's name, or null when its name has none (`Makefile`, `.env`, `data.`). */
export function extensionOf(relPath: string): string | null {
  const name = posix.basename(relPath);
  const dot = name.lastIndexOf('.');
  return dot > 0 && dot < name.length - 1 ? name.slice(dot).toLowerCase() : null;
}

const LF = 10;
const CR = 13;
const TAB = 9;
const SPACE = 32;
const COMMA = 44;
const QUOTE = 34;

// What the current cell can still be for the small-cell rule.
const NONE = 0; // nothing but leading white space yet
const DIGITS = 1; // digits (after leading white space)
const DIGITS_SPACE = 2; // digits, then trailing white space
const NOT_A_COUNT = 3; // anything else: skipped to its end

// Where the parser stands with quotes.
const OUT = 0;
const IN = 1;
const IN_AFTER_QUOTE = 2; // a quote inside a quoted field: the next byte says closing or doubled

/** The CSV/TSV rules of one file: a resumable byte-level parser with constant memory. */
class CsvCheck {
  private quoted = OUT;
  private fieldStart = true;
  private num: number;
  private value = 0;
  private col = 0;
  /** Non-empty records ended so far, the header included. */
  private records = 0;
  private rowHasContent = false;
  private header: Buffer[] = [];
  private headerBytes = 0;
  private headerTruncated = false;
  private columns: string[] = [];
  /** Cells the small-cell rule flagged (listed or not). */
  smallCells = 0;
  private readonly startNum: number;

  constructor(
    private readonly delim: number,
    private readonly min: number,
    private readonly forbidden: ReadonlySet<string>,
    private readonly flag: (rule: DisclosureFinding['rule'], detail: string) => void,
  ) {
    // With the rule off every cell starts as "not a count": the loop then only looks for delimiters.
    this.startNum = min > 0 ? NONE : NOT_A_COUNT;
    this.num = this.startNum;
  }

  dataRows(): number {
    return Math.max(0, this.records - 1);
  }

  write(buf: Buffer): void {
    const n = buf.length;
    const delim = this.delim;
    const min = this.min;
    const startNum = this.startNum;
    let quoted = this.quoted;
    let fieldStart = this.fieldStart;
    let num = this.num;
    let value = this.value;
    let col = this.col;
    let records = this.records;
    let rowHasContent = this.rowHasContent;
    // Where the header's bytes start in this chunk (-1: the header is read already).
    let headerFrom = records === 0 ? 0 : -1;
    let i = 0;
    while (i < n) {
      if (quoted === IN) {
        // Inside quotes only a quote ends anything; a cell that cannot be a count jumps to it.
        for (; i < n && num !== NOT_A_COUNT; i++) {
          const c = buf[i]!;
          if (c === QUOTE) break;
          const d = c - 48;
          if (d >= 0 && d <= 9) {
            if (num === DIGITS_SPACE) num = NOT_A_COUNT;
            else {
              value = value * 10 + d;
              num = value < min ? DIGITS : NOT_A_COUNT;
            }
          } else if (c === SPACE || c === TAB || c === CR || c === LF) {
            if (num === DIGITS) num = DIGITS_SPACE;
          } else num = NOT_A_COUNT;
        }
        if (i < n && buf[i] !== QUOTE) {
          const q = buf.indexOf(QUOTE, i);
          i = q < 0 ? n : q;
        }
        if (i === n) break;
        quoted = IN_AFTER_QUOTE;
        i++;
        continue;
      }
      if (quoted === IN_AFTER_QUOTE) {
        if (buf[i] === QUOTE) {
          // A doubled quote: a quote character in the field, which no count has.
          quoted = IN;
          num = NOT_A_COUNT;
          i++;
          continue;
        }
        quoted = OUT;
      }
      while (i < n) {
        const c = buf[i]!;
        if (c === delim || c === LF) {
          if (num !== NOT_A_COUNT && num !== NONE && records > 0 && value >= 1) this.smallCell(records, col);
          num = startNum;
          value = 0;
          fieldStart = true;
          i++;
          if (c === delim) {
            col++;
            rowHasContent = true;
            continue;
          }
          if (rowHasContent) {
            if (records === 0) {
              this.keepHeader(buf, headerFrom, i - 1);
              this.readHeader();
              headerFrom = -1;
            }
            records++;
          } else if (records === 0) {
            // An empty line before the header is no header.
            this.header = [];
            this.headerBytes = 0;
            headerFrom = i;
          }
          col = 0;
          rowHasContent = false;
          continue;
        }
        if (fieldStart) {
          fieldStart = false;
          if (c === QUOTE) {
            quoted = IN;
            rowHasContent = true;
            i++;
            break;
          }
        }
        i++;
        if (c === CR) {
          if (num === DIGITS) num = DIGITS_SPACE;
          continue;
        }
        rowHasContent = true;
        if (num !== NOT_A_COUNT) {
          const d = c - 48;
          if (d >= 0 && d <= 9) {
            if (num === DIGITS_SPACE) num = NOT_A_COUNT;
            else {
              value = value * 10 + d;
              // A value at the cap already can only grow: no small count, whatever follows.
              num = value < min ? DIGITS : NOT_A_COUNT;
            }
          } else if (c === SPACE || c === TAB) {
            if (num === DIGITS) num = DIGITS_SPACE;
          } else num = NOT_A_COUNT;
          if (num !== NOT_A_COUNT) continue;
        }
        // Not a count: on to the cell's end, which the loop's next turn handles.
        while (i < n) {
          const e = buf[i]!;
          if (e === delim || e === LF) break;
          i++;
        }
      }
    }
    if (headerFrom >= 0 && records === 0) this.keepHeader(buf, headerFrom, n);
    this.quoted = quoted;
    this.fieldStart = fieldStart;
    this.num = num;
    this.value = value;
    this.col = col;
    this.records = records;
    this.rowHasContent = rowHasContent;
  }

  /** The file ended: its last record ends too, newline or not (and a quote still open with it). */
  end(): void {
    this.quoted = OUT;
    if (this.rowHasContent || !this.fieldStart) this.write(Buffer.of(LF));
  }

  private keepHeader(buf: Buffer, from: number, to: number): void {
    const room = MAX_HEADER_BYTES - this.headerBytes;
    if (to - from > room) this.headerTruncated = true;
    const end = Math.min(to, from + room);
    if (end > from) {
      // A copy: the chunk's memory is the stream's to reuse.
      this.header.push(Buffer.from(buf.subarray(from, end)));
      this.headerBytes += end - from;
    }
  }

  private readHeader(): void {
    this.columns = headerCells(Buffer.concat(this.header), this.delim, this.headerTruncated);
    this.header = [];
    this.columns.forEach((name, index) => {
      if (this.forbidden.has(name.toLowerCase())) this.flag('forbidden_column', `column ${index + 1} ${JSON.stringify(clip(name, 100))} is a forbidden column`);
    });
  }

  private smallCell(record: number, col: number): void {
    this.smallCells += 1;
    if (this.smallCells > MAX_SMALL_CELL_FINDINGS_PER_FILE) return;
    const name = this.columns[col];
    const column = name ? JSON.stringify(clip(name, 100)) : `#${col + 1}`;
    // `record` counts the header as 1, so it is the data row's number (the first data row is row 1).
    this.flag('small_cell', `row ${record}, column ${column}: a count below ${this.min}`);
  }
}

/** A header record's cell names, unquoted, trimmed, the UTF-8 BOM dropped; a cut-off last cell is left out. */
export function headerCells(raw: Buffer, delim: number, truncated: boolean): string[] {
  const cells: string[] = [];
  let start = raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf ? 3 : 0;
  let parts: Buffer[] = [];
  let quoted = false;
  let fieldStart = true;
  const push = () => cells.push(Buffer.concat(parts).toString('utf8').trim());
  for (let i = start; i < raw.length; i++) {
    const c = raw[i]!;
    if (quoted) {
      if (c !== QUOTE) continue;
      parts.push(raw.subarray(start, i));
      if (raw[i + 1] === QUOTE) {
        // A doubled quote: one quote character, and the field goes on.
        start = i + 1;
        i++;
      } else {
        quoted = false;
        start = i + 1;
      }
    } else if (c === delim) {
      parts.push(raw.subarray(start, i));
      push();
      parts = [];
      start = i + 1;
      fieldStart = true;
    } else if (c === QUOTE && fieldStart) {
      quoted = true;
      fieldStart = false;
      start = i + 1;
    } else fieldStart = false;
  }
  if (!truncated) {
    // A quote still open at the header's end takes the rest as its text.
    parts.push(raw.subarray(start));
    push();
  }
  return cells;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Bytes as a person reads them beside the exact count: `17301504 bytes (16.5 MiB)`. */
function formatBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let unit = '';
  for (const u of units) {
    if (v < 1024) break;
    v /= 1024;
    unit = u;
  }
  return unit ? `${bytes} bytes (${Number(v.toPrecision(3))} ${unit})` : `${bytes} bytes`;
}
