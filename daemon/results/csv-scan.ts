/**
 * The CSV/TSV half of the disclosure checks (disclosure-scan.ts): a resumable parser that counts a
 * file's data rows, reads its header's column names and finds the cells the small-cell rule flags,
 * fed in whatever chunks the stream carries.
 *
 * A byte loop over the Buffer (RFC 4180: quoted fields with delimiters, doubled quotes and newlines,
 * CRLF; a chunk may end anywhere, inside a quote or between the two bytes of a CRLF), with nothing kept
 * but its state and at most MAX_HEADER_BYTES of the header. No string is made for a data cell: the
 * small-cell rule reads digits off the bytes, and a cell that cannot be a count (a letter, a second
 * digit past the cap) is skipped to its delimiter four bytes at a time (a quoted one with indexOf).
 * TSV is the same parser with a tab, quotes included, as the common TSV writers and readers quote.
 *
 * Speed (profiled with `node --cpu-prof` on the benchmark's CSV, test/bench/disclosure-checks.ts):
 * its cells are short (5 per 40-byte row), so the time goes to each cell's start and end as much as
 * to the bytes. Three rewrites were measured against this loop in one process, alternating, and none
 * was faster: one pass per cell with the count and the skip fused, a plain byte loop instead of the
 * four-byte skip (within noise), and indexOf to each cell's end (40 % slower: a call per short cell
 * costs more than its bytes). What stays is a small chunk read without a word view (MIN_WORDS_CHUNK).
 *
 * Lenient where RFC 4180 is silent or strict: a quote inside an unquoted field is a character; bytes
 * after a closing quote belong to the field; an empty line (or a lone CR) is no record; a quote left
 * open at the end of the file ends there. Cells are trimmed (spaces, tabs, CR, LF) before the
 * small-cell rule looks at them, so ` 7 ` and `"7"` are counts and `7a`, `7 7`, `0`, `-3`, `7.0` are not.
 */
import type { DisclosureFinding } from '../../scheduler/contract/disclosure.js';

/** Small-cell findings listed per file; the rest of that file's are summed in one more finding. */
export const MAX_SMALL_CELL_FINDINGS_PER_FILE = 10;
/** Most bytes of a CSV/TSV header kept to read its column names (a longer header's tail goes unnamed). */
export const MAX_HEADER_BYTES = 64 * 1024;

const LF = 10;
const CR = 13;
export const TAB = 9;
const SPACE = 32;
export const COMMA = 44;
const QUOTE = 34;
const LF4 = LF * 0x01010101;
const NO_WORDS = new Int32Array(0);
// Chunks shorter than this (in bytes past the first aligned word) are read without a word view.
const MIN_WORDS_CHUNK = 256;

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
export class CsvCheck {
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
    // The chunk's 4-byte-aligned words, for skipping the inside of cells that cannot be counts; a
    // small chunk (a test's byte at a time, a socket's scrap) is read byte by byte instead: making the
    // view costs more than it saves there.
    const lead = (4 - (buf.byteOffset & 3)) & 3;
    const wordCount = n - lead >= MIN_WORDS_CHUNK ? (n - lead) >> 2 : 0;
    const words = wordCount > 0 ? new Int32Array(buf.buffer, buf.byteOffset + lead, wordCount) : NO_WORDS;
    const delim4 = delim * 0x01010101;
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
        // Not a count: on to the cell's end, which the loop's next turn handles. Byte by byte to a
        // word boundary, then four bytes a turn (SWAR: a word holds the delimiter or LF exactly when
        // one of its bytes XORed with it is zero), then byte by byte to the very byte.
        while (i < n && ((i - lead) & 3) !== 0) {
          const e = buf[i]!;
          if (e === delim || e === LF) break;
          i++;
        }
        if (i < n && buf[i] !== delim && buf[i] !== LF) {
          let w = (i - lead) >> 2;
          for (; w < wordCount; w++) {
            const v = words[w]!;
            const x = v ^ delim4;
            const y = v ^ LF4;
            if ((((x - 0x01010101) & ~x) | ((y - 0x01010101) & ~y)) & 0x80808080) break;
          }
          i = lead + (w << 2);
          while (i < n) {
            const e = buf[i]!;
            if (e === delim || e === LF) break;
            i++;
          }
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

/** `text` cut to `max` characters, an ellipsis marking the cut. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
