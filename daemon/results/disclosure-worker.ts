/**
 * The worker thread of threaded-scanner.ts: the same rules as DisclosureScanner (disclosure-rules.ts),
 * fed the bytes the main thread copied into slabs and transferred here, so that the checks run beside
 * the read-back instead of on its event loop.
 *
 * Messages are handled in the order they were posted, so a `findings` request is answered after every
 * byte before it was scanned. A slab is transferred back (`free`) as soon as its bytes are scanned:
 * nothing of it is kept (the CSV parser copies the header bytes it keeps). Any error ends the worker after
 * saying why; the main thread then reports the files it had sent here as not checked.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
// The rules without the schema check (the main thread's DisclosureScanner made it): no zod to load.
import { RuleScanner, type DisclosureFileScan } from './disclosure-rules.js';
import type { FromScanWorker, ScanWorkerData, ToScanWorker } from './threaded-scanner.js';

if (!parentPort) throw new Error('disclosure-worker.ts runs only as a worker thread (threaded-scanner.ts starts it)');
const port: MessagePort = parentPort;

const { checks, maxFindings } = workerData as ScanWorkerData;
const scanner = new RuleScanner(checks, maxFindings);
const files = new Map<number, DisclosureFileScan>();
const post = (m: FromScanWorker) => port.postMessage(m);

function fileOf(id: number): DisclosureFileScan {
  const f = files.get(id);
  if (!f) throw new Error(`disclosure worker: no open file ${id}`);
  return f;
}

function handle(m: ToScanWorker): void {
  switch (m.t) {
    case 'open':
      files.set(m.id, scanner.file(m.rel, m.size));
      return;
    case 'bytes': {
      if (m.len > m.slab.byteLength) throw new Error(`disclosure worker: ${m.len} bytes in a slab of ${m.slab.byteLength}`);
      // The scanner's own write is synchronous: the slab goes back as soon as it returns.
      void fileOf(m.id).write(Buffer.from(m.slab, 0, m.len));
      port.postMessage({ t: 'free', slab: m.slab } satisfies FromScanWorker, [m.slab]);
      return;
    }
    case 'end':
      fileOf(m.id).end();
      files.delete(m.id);
      return;
    case 'discard':
      files.get(m.id)?.discard();
      files.delete(m.id);
      return;
    case 'named':
      // A file whose checks need only its name and size (not a CSV/TSV): scanned whole at its end.
      scanner.file(m.rel, m.size).end();
      return;
    case 'findings':
      post({ t: 'findings', findings: scanner.findings() });
      return;
  }
}

port.on('message', (m: ToScanWorker) => {
  try {
    handle(m);
  } catch (err) {
    post({ t: 'failed', reason: err instanceof Error ? err.message : String(err) });
    port.close();
    process.exit(1);
  }
});
