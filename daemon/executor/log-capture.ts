/**
 * A bounded log buffer for run.log and build.log: a run that prints gigabytes must not exhaust the
 * node, yet the researcher needs both how it started and how it ended, so the head and the tail are
 * kept and the middle is replaced by one marker line.
 */

/** Default bytes kept from the start of the log. */
export const DEFAULT_HEAD_BYTES = 1024 * 1024;
/** Default bytes kept from the end of the log. */
export const DEFAULT_TAIL_BYTES = 1024 * 1024;

/** Keeps the first `headBytes` and the last `tailBytes` of everything appended. */
export class LogCapture {
  readonly headBytes: number;
  readonly tailBytes: number;
  private readonly head: Buffer;
  private headLength = 0;
  // The tail is a ring: `tailStart` is the oldest byte once it has wrapped.
  private tail: Buffer | null = null;
  private tailLength = 0;
  private tailStart = 0;
  private total = 0;

  constructor(opts: { headBytes?: number; tailBytes?: number } = {}) {
    this.headBytes = opts.headBytes ?? DEFAULT_HEAD_BYTES;
    this.tailBytes = opts.tailBytes ?? DEFAULT_TAIL_BYTES;
    if (!(this.headBytes >= 0 && this.tailBytes >= 0)) throw new Error('log capture sizes must be >= 0');
    this.head = Buffer.alloc(this.headBytes);
  }

  /** Bytes appended so far, kept or not. */
  get totalBytes(): number {
    return this.total;
  }

  /** Bytes dropped from the middle. */
  get omittedBytes(): number {
    return this.total - this.headLength - this.tailLength;
  }

  /** Adds bytes (strings as UTF-8). */
  append(chunk: Buffer | string): void {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    this.total += buf.length;
    if (this.headLength < this.headBytes) {
      const n = Math.min(buf.length, this.headBytes - this.headLength);
      buf.copy(this.head, this.headLength, 0, n);
      this.headLength += n;
      buf = buf.subarray(n);
    }
    if (buf.length > 0 && this.tailBytes > 0) this.appendTail(buf);
  }

  private appendTail(buf: Buffer): void {
    const cap = this.tailBytes;
    this.tail ??= Buffer.alloc(cap);
    if (buf.length >= cap) {
      buf.copy(this.tail, 0, buf.length - cap);
      this.tailStart = 0;
      this.tailLength = cap;
      return;
    }
    let writeAt = (this.tailStart + this.tailLength) % cap;
    let rest = buf;
    while (rest.length > 0) {
      const n = Math.min(rest.length, cap - writeAt);
      rest.copy(this.tail, writeAt, 0, n);
      rest = rest.subarray(n);
      writeAt = (writeAt + n) % cap;
    }
    const overflow = this.tailLength + buf.length - cap;
    if (overflow > 0) {
      this.tailStart = (this.tailStart + overflow) % cap;
      this.tailLength = cap;
    } else {
      this.tailLength += buf.length;
    }
  }

  private tailBuffer(): Buffer {
    if (this.tail === null || this.tailLength === 0) return Buffer.alloc(0);
    const end = this.tailStart + this.tailLength;
    if (end <= this.tailBytes) return Buffer.from(this.tail.subarray(this.tailStart, end));
    return Buffer.concat([this.tail.subarray(this.tailStart), this.tail.subarray(0, end - this.tailBytes)]);
  }

  /** The kept log: head, the marker line when bytes were dropped, then the exact last bytes. */
  toBuffer(): Buffer {
    const head = this.head.subarray(0, this.headLength);
    const tail = this.tailBuffer();
    const omitted = this.omittedBytes;
    if (omitted === 0) return Buffer.concat([head, tail]);
    const lead = this.headLength > 0 && head[this.headLength - 1] !== 0x0a ? '\n' : '';
    const marker = Buffer.from(`${lead}... [secd: ${omitted} bytes omitted] ...\n`, 'utf8');
    return Buffer.concat([head, marker, tail]);
  }

  /** The kept log as UTF-8 text (a cut through a multi-byte character shows as U+FFFD). */
  toString(): string {
    return this.toBuffer().toString('utf8');
  }
}
