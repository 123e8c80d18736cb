/**
 * The worker thread of threaded-scanner.ts: the same DisclosureScanner, fed the bytes the main thread
 * copied into shared slabs, so that the checks run beside the read-back instead of on its event loop.
 *
 * Messages are handled in the order they were posted, so a `findings` request is answered after every
 * byte before it was scanned. A slab is handed back (`free`) as soon as its bytes are scanned: nothing
 * of it is kept (the CSV parser copies the header bytes it keeps). Any error ends the worker after
 * saying why; the main thread then reports the files it had sent here as not checked.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DisclosureScanner, type DisclosureFileScan } from './disclosure-scan.js';
import type { FromScanWorker, ScanWorkerData, ToScanWorker } from './threaded-scanner.js';

const port = parentPort;
if (!port) throw new Error('disclosure-worker.ts runs only as a worker thread (threaded-scanner.ts starts it)');

const { checks, slabs } = workerData as ScanWorkerData;
const views = slabs.map((s) => Buffer.from(s));
const scanner = new DisclosureScanner(checks);
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
      const view = views[m.slab];
      if (!view || m.len > view.length) throw new Error(`disclosure worker: no slab ${m.slab} of ${m.len} bytes`);
      // The scanner's own write is synchronous: the slab is free again once it returns.
      void fileOf(m.id).write(view.subarray(0, m.len));
      post({ t: 'free', slab: m.slab });
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
