/**
 * The disclosure checks of a run's outputs off the event loop: DisclosureScanner's rules in a worker
 * thread (disclosure-worker.ts) read each CSV/TSV while the main thread goes on writing the tar
 * stream to disk, so the checks overlap the read-back instead of adding to it.
 *
 * Hand-off: the main thread copies each chunk into one of SLABS 1 MiB ArrayBuffers and transfers it
 * to the worker when it is full or its file ends; the worker transfers it back once scanned, so the
 * same warm 8 MiB circulate. All slabs in flight is the backpressure: `write` then returns a promise
 * and the read-back waits for the worker. Measured against the alternatives (the benchmark's
 * hand-off lines, and the parser alone, best of 16): a fresh ArrayBuffer per batch costs new pages
 * and garbage, about twice the main thread's time (150-200 against 85-95 ms per 256 MB);
 * SharedArrayBuffer slabs need no transfer, but V8's parser reads their bytes about 10 % slower
 * (417 against 456 MB/s), and parsing is the worker's whole job.
 *
 * Small outputs are scanned inline: the worker starts only once the CSV/TSV bytes (as tar headers
 * declare them) pass INLINE_BYTES, as its start (30-70 ms) costs more than scanning that much; and
 * everything is scanned inline when the machine has no core to spare (coreToSpare), where a worker
 * was measured to slow the read-back down rather than overlap it. Other files' checks need only
 * their name and size, so their bytes never cross; while the worker runs they are only named to it,
 * which keeps the findings in the order of the files.
 *
 * A worker that dies, errs or does not answer within ANSWER_MS loses no outputs: the read-back goes
 * on, every later file is scanned inline (no second worker), and each delivered file the worker had
 * been given gets one finding `{ rule: 'more', detail: 'not checked: …' }`: the findings the checks
 * would have made are left out, and a reviewer sees which files to look at by hand.
 */
import { availableParallelism, loadavg } from 'node:os';
import { Worker } from 'node:worker_threads';
import { clipPath, DisclosureScanner, readsContent, type DisclosureFileScan, type OutputsScanner } from './disclosure-scan.js';
import { MAX_DISCLOSURE_FINDINGS, type DisclosureChecks, type DisclosureFinding } from '../../scheduler/contract/disclosure.js';

/** What the worker is started with. */
export interface ScanWorkerData {
  /** Validated already, by the ThreadedScanner's own DisclosureScanner. */
  checks: DisclosureChecks;
  maxFindings: number;
}

/** Main thread to worker, handled in order. */
export type ToScanWorker =
  | { t: 'open'; id: number; rel: string; size: number | undefined }
  | { t: 'bytes'; id: number; slab: ArrayBuffer; len: number }
  | { t: 'end'; id: number }
  | { t: 'discard'; id: number }
  | { t: 'named'; rel: string; size: number | undefined }
  | { t: 'findings' };

/** Worker to main thread. */
export type FromScanWorker =
  | { t: 'free'; slab: ArrayBuffer }
  | { t: 'findings'; findings: DisclosureFinding[] }
  | { t: 'failed'; reason: string };

/** CSV/TSV bytes scanned inline before the worker starts. */
export const INLINE_BYTES = 1 << 20;
const SLAB_BYTES = 1 << 20;
const SLABS = 8;
/** How long the worker may take to answer the findings once asked (it has at most SLABS MiB left to scan). */
const ANSWER_MS = 60_000;

/** Tuning and test seams; the defaults are what a node uses. */
export interface ThreadedScannerOptions {
  /** CSV/TSV bytes scanned inline before the worker starts (0: every file goes to the worker); INLINE_BYTES, or all of them with no core to spare. */
  inlineBytes?: number;
  /** Called with the worker once started (tests use it to end the worker part way). */
  onWorker?: (worker: Worker) => void;
}

/**
 * Whether a worker would have a core to itself: more than one core, and the last minute's load (the
 * read-back's own threads included) leaves one free. Without one the worker only takes turns with the
 * read-back and adds its hand-off: measured on 2 vCPUs at a load of 4-8, 13-25 % slower than inline.
 */
export function coreToSpare(cores = availableParallelism(), load = loadavg()[0] ?? 0): boolean {
  return cores > 1 && load <= cores - 1;
}

type Segment = { kind: 'inline'; scanner: DisclosureScanner } | { kind: 'worker'; link: WorkerLink; files: string[] };

/** A DisclosureScanner for a run's outputs whose CSV/TSV scanning runs in a worker thread; `findings()` at the end. */
export class ThreadedScanner implements OutputsScanner {
  private readonly segments: Segment[] = [];
  private inlineLeft: number;
  private readonly checks: DisclosureChecks;
  private closed = false;

  constructor(checks: DisclosureChecks, private readonly options: ThreadedScannerOptions = {}) {
    // Validates the checks here, with DisclosureScanner's message, before any worker starts.
    this.segments.push({ kind: 'inline', scanner: new DisclosureScanner(checks) });
    this.checks = checks;
    this.inlineLeft = options.inlineBytes ?? (coreToSpare() ? INLINE_BYTES : Infinity);
  }

  file(relPath: string, declaredSize?: number): DisclosureFileScan {
    if (this.closed) throw new Error('ThreadedScanner: file() after findings() or close()');
    let last = this.segments.at(-1)!;
    if (last.kind === 'worker' && last.link.failure !== null) {
      // No second worker: whatever ended this one could end the next; the rest is checked here.
      this.inlineLeft = Infinity;
      last = this.inline();
    }
    if (last.kind === 'inline') {
      const big = readsContent(relPath) && (this.inlineLeft <= 0 || (declaredSize ?? Infinity) > this.inlineLeft);
      if (!big) {
        if (readsContent(relPath)) this.inlineLeft -= declaredSize ?? 0;
        return last.scanner.file(relPath, declaredSize);
      }
      last = { kind: 'worker', link: new WorkerLink(this.checks, this.options.onWorker), files: [] };
      this.segments.push(last);
    }
    const { link, files } = last;
    return link.file(relPath, declaredSize, () => files.push(relPath));
  }

  /** Every finding, in the order of the files (at most MAX_DISCLOSURE_FINDINGS, then `more`); stops the worker. */
  async findings(): Promise<DisclosureFinding[]> {
    this.closed = true;
    const all = new DisclosureScanner(this.checks);
    for (const seg of this.segments) {
      if (seg.kind === 'inline') {
        all.add(seg.scanner.findings());
        continue;
      }
      const answer = await seg.link.findings();
      if (Array.isArray(answer)) all.add(answer);
      else all.add(seg.files.map((file) => ({ file: clipPath(file), rule: 'more', detail: `not checked: ${answer.reason}`.slice(0, 500) })));
    }
    return all.findings();
  }

  /** Stops the worker without asking for findings (a read-back that failed); safe to call again. */
  async close(): Promise<void> {
    this.closed = true;
    for (const seg of this.segments) if (seg.kind === 'worker') await seg.link.stop();
  }

  private inline(): Segment {
    const seg: Segment = { kind: 'inline', scanner: new DisclosureScanner(this.checks) };
    this.segments.push(seg);
    return seg;
  }
}

/** The worker source to start: the compiled .js beside this file, or under vitest the .ts through a type-stripping loader. */
function startWorker(data: ScanWorkerData): Worker {
  const self = import.meta.url;
  if (self.endsWith('.js')) return new Worker(new URL('./disclosure-worker.js', self), { workerData: data });
  // Running from source (vitest): Node 20 runs no TypeScript, so the worker registers a loader first.
  const boot = [
    "import { register } from 'node:module';",
    "import { workerData } from 'node:worker_threads';",
    'register(workerData.loader);',
    'await import(workerData.entry);',
  ].join('\n');
  return new Worker(boot, {
    eval: true,
    workerData: { ...data, loader: new URL('./ts-source-loader.mjs', self).href, entry: new URL('./disclosure-worker.ts', self).href },
  });
}

/** One worker: its slabs, the slab being filled, and how it ended. */
class WorkerLink {
  /** Why the worker can no longer be trusted with bytes (null while it can). */
  failure: string | null = null;
  private readonly worker: Worker;
  private readonly free: ArrayBuffer[] = [];
  private readonly waiting: Array<() => void> = [];
  /** The slab being filled (null: none taken), and a view of it. */
  private slab: ArrayBuffer | null = null;
  private view = Buffer.alloc(0);
  private fill = 0;
  private fillFile = -1;
  private nextId = 0;
  private answer: ((found: DisclosureFinding[] | { reason: string }) => void) | null = null;
  private asked: Promise<DisclosureFinding[] | { reason: string }> | null = null;
  private answered = false;
  private exited = false;

  constructor(checks: DisclosureChecks, onWorker: ((w: Worker) => void) | undefined) {
    for (let i = 0; i < SLABS; i++) this.free.push(new ArrayBuffer(SLAB_BYTES));
    this.worker = startWorker({ checks, maxFindings: MAX_DISCLOSURE_FINDINGS });
    this.worker.on('message', (m: FromScanWorker) => this.received(m));
    this.worker.on('error', (err) => this.fail(`the disclosure worker failed: ${err.message}`));
    this.worker.on('exit', (code) => {
      this.exited = true;
      this.fail(`the disclosure worker exited (code ${code}) before it answered`);
    });
    onWorker?.(this.worker);
  }

  file(rel: string, size: number | undefined, delivered: () => void): DisclosureFileScan {
    const id = this.nextId++;
    const content = readsContent(rel);
    let bytes = 0;
    let done = false;
    if (content) this.post({ t: 'open', id, rel, size });
    return {
      write: (chunk) => {
        if (done) throw new Error(`ThreadedScanner: ${rel} was written after its end`);
        bytes += chunk.length;
        return content ? this.write(id, chunk, 0) : undefined;
      },
      end: () => {
        if (done) return;
        done = true;
        delivered();
        if (!content) return this.post({ t: 'named', rel, size: Math.max(bytes, size ?? 0) });
        this.flush();
        this.post({ t: 'end', id });
      },
      discard: () => {
        if (done) return;
        done = true;
        if (!content) return;
        // The slab's bytes of this file are dropped, not sent: the file is forgotten anyway.
        if (this.fillFile === id) this.fill = 0;
        this.post({ t: 'discard', id });
      },
    };
  }

  findings(): Promise<DisclosureFinding[] | { reason: string }> {
    if (this.asked) return this.asked;
    this.asked = new Promise((resolve) => {
      if (this.failure !== null) return resolve({ reason: this.failure });
      const late = setTimeout(() => this.fail(`the disclosure worker did not answer within ${ANSWER_MS / 1000} s`), ANSWER_MS);
      late.unref();
      this.answer = (found) => {
        clearTimeout(late);
        resolve(found);
      };
      this.post({ t: 'findings' });
    });
    return this.asked.finally(() => this.stop());
  }

  async stop(): Promise<void> {
    if (!this.exited) await this.worker.terminate();
  }

  /** Copies `chunk[at..]` into slabs, sending each full one; a promise when every slab is in flight. */
  private write(id: number, chunk: Buffer, at: number): void | Promise<void> {
    while (at < chunk.length) {
      if (this.failure !== null) return;
      if (this.slab !== null && this.fillFile !== id) this.flush();
      if (this.slab === null) {
        const free = this.free.pop();
        if (free === undefined) return this.later(id, chunk, at);
        this.slab = free;
        this.view = Buffer.from(free);
        this.fill = 0;
        this.fillFile = id;
      }
      const n = Math.min(chunk.length - at, SLAB_BYTES - this.fill);
      chunk.copy(this.view, this.fill, at, at + n);
      this.fill += n;
      at += n;
      if (this.fill === SLAB_BYTES) this.flush();
    }
  }

  private async later(id: number, chunk: Buffer, at: number): Promise<void> {
    await new Promise<void>((resolve) => this.waiting.push(resolve));
    await this.write(id, chunk, at);
  }

  private flush(): void {
    if (this.slab === null) return;
    if (this.fill > 0 && this.failure === null) this.post({ t: 'bytes', id: this.fillFile, slab: this.slab, len: this.fill }, [this.slab]);
    else this.free.push(this.slab);
    this.slab = null;
    this.fill = 0;
  }

  private post(m: ToScanWorker, transfer: ArrayBuffer[] = []): void {
    if (this.failure === null) this.worker.postMessage(m, transfer);
  }

  private received(m: FromScanWorker): void {
    switch (m.t) {
      case 'free':
        this.free.push(m.slab);
        this.waiting.shift()?.();
        return;
      case 'findings':
        this.answered = true;
        this.answer?.(m.findings);
        this.answer = null;
        return;
      case 'failed':
        this.fail(`the disclosure checks failed: ${m.reason}`);
        return;
    }
  }

  private fail(reason: string): void {
    // An exit after the answer is the worker being stopped, no failure.
    if (this.answered) return;
    this.failure ??= reason;
    this.answer?.({ reason: this.failure });
    this.answer = null;
    // Whoever waits for a slab goes on: the bytes are no longer sent.
    for (const wake of this.waiting.splice(0)) wake();
  }
}
