/**
 * Moves SQLite's WAL checkpoints off the leader's event loop.
 *
 * With `synchronous = NORMAL` a commit does not fsync; the checkpoint that folds the WAL back into
 * the database does, and by default it runs inside whichever commit crosses 1000 WAL pages — in
 * practice, now and then, inside a webhook answer (a 20-50 ms stall at 200 pushes, the p99). So the
 * leader's connection turns automatic checkpoints off and a worker thread with its own connection
 * checkpoints PASSIVE-ly (never waiting for, or blocking, the writer) every `everyMs`.
 *
 * The worker is evaluated from a string (CommonJS), so it runs the same from dist/ and from the
 * TypeScript sources under vitest; database.ts (the one importer of the SQLite library) hands over
 * the library's path.
 */
import { Worker } from 'node:worker_threads';

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
const checkpoint = () => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (err) { parentPort.postMessage({ error: String(err && err.message || err) }); }
};
const timer = setInterval(checkpoint, workerData.everyMs);
parentPort.on('message', () => {
  clearInterval(timer);
  checkpoint();
  db.close();
  const closed = new Int32Array(workerData.closed);
  Atomics.store(closed, 0, 1);
  Atomics.notify(closed, 0);
  parentPort.close();
});
`;

/** Longest stop() waits for the worker to close its connection. */
const STOP_WAIT_MS = 2000;

/** A running checkpointer; `stop` checkpoints once more, closes its connection and returns when it is closed. */
export interface WalCheckpointer {
  stop(): void;
}

/**
 * Start checkpointing the database file at `path` every `everyMs` from a worker thread. The
 * worker never keeps the process alive; `onError` hears a checkpoint that failed (the next one tries again).
 */
export function startWalCheckpointer(path: string, everyMs: number, sqliteModule: string, onError: (message: string) => void = () => {}): WalCheckpointer {
  if (!Number.isInteger(everyMs) || everyMs <= 0) throw new Error(`startWalCheckpointer: everyMs must be a positive integer (got ${everyMs})`);
  // Set by the worker once its connection is closed: stop() waits for it, so that when the leader's
  // db.close() returns no connection of secd's holds the file (a backup or a removal may follow).
  const closed = new SharedArrayBuffer(4);
  const worker = new Worker(WORKER, { eval: true, workerData: { module: sqliteModule, path, everyMs, closed } });
  worker.unref();
  worker.on('message', (m: { error?: string }) => {
    if (m.error) onError(m.error);
  });
  worker.on('error', (err) => onError(err.message));
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      worker.postMessage('stop');
      // At most 2 s: a worker that never started (an unopenable file) has nothing to close.
      Atomics.wait(new Int32Array(closed), 0, 0, STOP_WAIT_MS);
    },
  };
}
