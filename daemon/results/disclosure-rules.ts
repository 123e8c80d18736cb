/**
 * The disclosure checks themselves (DESIGN §10; disclosure-scan.ts says what they are and cost): each
 * file's extension, size and, for a CSV/TSV, its bytes (csv-scan.ts), and the run's list of findings
 * with its cap. Kept apart from disclosure-scan.ts, which validates the checks with the contract's
 * schema, so that a worker thread running them (disclosure-worker.ts) does not load zod: that import
 * alone takes 70-160 ms here, three times a bare worker's start.
 */
import { posix } from 'node:path';
// Types only: this module loads no schema library, so a worker thread that runs it starts fast.
import type { DisclosureChecks, DisclosureFinding } from '../../scheduler/contract/disclosure.js';
import { clip, COMMA, CsvCheck, MAX_SMALL_CELL_FINDINGS_PER_FILE, TAB } from './csv-scan.js';

/** One file being scanned: its bytes in order, then `end()`; `discard()` when the file is not delivered after all. */
export interface DisclosureFileScan {
  /**
   * The next bytes. A promise asks the caller to wait before the next chunk (a scan off the event
   * loop with its buffers full) and to leave `chunk` untouched until it resolves; it never rejects.
   */
  write(chunk: Buffer): void | Promise<void>;
  /** The file is complete: its findings join the scanner's. */
  end(): void;
  /** The file was not delivered (a cap, a broken stream): whatever it would have flagged is forgotten. */
  discard(): void;
}

/** What extractOutputsArchive needs of a scanner. */
export interface OutputsScanner {
  file(relPath: string, declaredSize?: number): DisclosureFileScan;
}

/**
 * The checks on any number of files, keeping the first `maxFindings` findings, with checks already
 * validated: DisclosureScanner (disclosure-scan.ts) on the event loop, disclosure-worker.ts in a thread.
 */
export class RuleScanner implements OutputsScanner {
  private readonly listed: DisclosureFinding[] = [];
  private omitted = 0;
  private readonly allowed: ReadonlySet<string>;
  private readonly forbidden: ReadonlySet<string>;

  constructor(
    private readonly checks: DisclosureChecks,
    private readonly maxFindings: number,
  ) {
    this.allowed = new Set(checks.allowedExtensions.map((e) => e.toLowerCase()));
    this.forbidden = new Set(checks.forbiddenColumns.map((c) => c.trim().toLowerCase()));
  }

  /** Starts scanning `relPath` (relative to /outputs, or `_secd/run.log`); `declaredSize` from a tar header, when known. */
  file(relPath: string, declaredSize?: number): DisclosureFileScan {
    const commit = (found: DisclosureFinding[], extra: number) => this.add(found, extra);
    return new FileScan(relPath, declaredSize, this.checks, this.maxFindings, this.allowed, this.forbidden, commit);
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
      else if (this.listed.length < this.maxFindings) this.listed.push(f);
      else this.omitted += 1;
    }
  }

  /** Everything flagged so far: at most `maxFindings`, then one `more` finding saying how many were left out. */
  findings(): DisclosureFinding[] {
    const out = [...this.listed];
    if (this.omitted > 0) out.push({ file: '*', rule: 'more', detail: `${this.omitted} more findings not listed` });
    return out;
  }
}

type Commit = (found: DisclosureFinding[], extra: number) => void;

/** Longest path a finding names (clipPath). */
export const MAX_FINDING_PATH = 256;

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
    private readonly maxFindings: number,
    allowed: ReadonlySet<string>,
    forbidden: ReadonlySet<string>,
    private readonly commit: Commit,
  ) {
    const ext = extensionOf(file);
    if (ext === null) this.flag('extension', 'no file extension');
    else if (!allowed.has(ext)) this.flag('extension', `${JSON.stringify(clip(ext, 40))} is not an allowed extension`);
    this.csv =
      ext !== null && CONTENT_EXTENSIONS.has(ext)
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
    if (this.pending.length < this.maxFindings) this.pending.push({ file: clipPath(this.file), rule, detail: clip(detail, 500) });
    else this.extra += 1;
  }
}

/**
 * A path as a finding names it: at most MAX_FINDING_PATH characters, its middle cut so that the file's
 * own name stays. The findings travel in the node's result message (1 MiB at most, several results in
 * a `hello`): 201 findings of 4096-character paths would not fit.
 */
export function clipPath(path: string): string {
  if (path.length <= MAX_FINDING_PATH) return path;
  const tail = Math.floor(MAX_FINDING_PATH / 2);
  return `${path.slice(0, MAX_FINDING_PATH - tail - 1)}…${path.slice(-tail)}`;
}

// The extensions whose bytes the checks read; every other file's checks need only its name and size.
const CONTENT_EXTENSIONS: ReadonlySet<string> = new Set(['.csv', '.tsv']);

/** Whether the checks read the file's bytes (a CSV/TSV) or only its name and size. */
export function readsContent(relPath: string): boolean {
  const ext = extensionOf(relPath);
  return ext !== null && CONTENT_EXTENSIONS.has(ext);
}

/** The lower-case last `.ext` of the file's name, or null when its name has none (`Makefile`, `.env`, `data.`). */
export function extensionOf(relPath: string): string | null {
  const name = posix.basename(relPath);
  const dot = name.lastIndexOf('.');
  return dot > 0 && dot < name.length - 1 ? name.slice(dot).toLowerCase() : null;
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
