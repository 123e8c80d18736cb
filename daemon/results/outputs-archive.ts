/**
 * Extracts a run's /outputs, read through the engine's archive API as a tar stream, into a folder the
 * node owns. The node runs unprivileged while run containers usually run as root: reading the files
 * through dockerd (root) instead of a host bind mount means a 0600 file or a 0700 folder made by the
 * container still comes back, and nothing the container made is ever left on the node's disk.
 *
 * The tar was written from a folder researcher code controlled, so it is trusted no more than that
 * folder: the same rules as copyOutputs (outputs-copy.ts) decide what is delivered — only regular files
 * and folders, links and special files listed and never written, caps checked before a byte is
 * written and again while streaming — and no name may land outside the destination. This is the only
 * module that imports tar-stream.
 *
 * A file left out is still streamed by the engine to get past it (a tar has no index), so reading is
 * bounded too: once the bytes of the entries read, kept or skipped, would pass `readLimitBytes` the
 * stream is dropped and the entry it stopped at is listed (an 8 GiB sparse file is 8 GiB of zeros on
 * the wire). `signal` stops the read at once (a deadline, a cancel, a full disk): what was written
 * whole is kept, the file in progress is removed and the rest is listed as `.`, unreadable.
 */
import { constants as fsc } from 'node:fs';
import { chmod, lstat, mkdir, open, unlink } from 'node:fs/promises';
import { posix, resolve, sep, dirname } from 'node:path';
import { extract, type Header } from 'tar-stream';
import {
  assertOutputsCaps,
  deliveredFileMode,
  DELIVERED_DIR_MODE,
  kindLeftOutReason,
  reservedReason,
  sizeLeftOutReason,
  type CopyOutputsOptions,
  type OutputsCaps,
  type OutputsEntryKind,
} from './outputs-copy.js';
import type { OutputsScanner } from './disclosure-scan.js';
import type { LeftOut, OutputsManifest } from '../../scheduler/contract/run-spec.js';

/** copyOutputs' options, and the disclosure checks every delivered file is streamed through. */
export interface ExtractOutputsOptions extends CopyOutputsOptions {
  /** Sees each delivered file's bytes as they are written; a file left out is discarded from it. */
  scanner?: OutputsScanner;
  /** Bytes of entries read (delivered or skipped) after which reading stops; default readLimitOf(caps). */
  readLimitBytes?: number;
  /** Aborted: stop reading now (what came whole is kept). */
  signal?: AbortSignal;
}

/**
 * The default read bound: twice the total cap and twice the file cap. Greedy delivery
 * (sizeLeftOutReason) skips files to keep smaller ones after them: this leaves room for a full cap's
 * worth of skipped bytes and two files over the file cap (checkpoints before the metrics still cost
 * no metrics); past it, what is left is mostly what could never be delivered.
 */
export function readLimitOf(caps: OutputsCaps): number {
  return 2 * caps.maxTotalBytes + 2 * caps.maxFileBytes;
}

/** The entry's path relative to the archive root ('' for the root itself), or null when it would escape it. */
export function archiveEntryPath(name: string): string | null {
  if (name.includes('\0') || name.startsWith('/')) return null;
  const norm = posix.normalize(name).replace(/\/+$/, '');
  if (norm === '' || norm === '.') return '';
  if (norm === '..' || norm.startsWith('../')) return null;
  return norm;
}

function kindOf(type: Header['type']): OutputsEntryKind {
  switch (type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'symlink':
      return 'symlink';
    default:
      // Hardlinks too: the file they name is delivered under its own name, once.
      return 'other';
  }
}

/**
 * Extracts `tar` (entries relative to /outputs, as `GET /containers/{id}/archive?path=/outputs/.` gives
 * them) into `destDir` under the caps; says what was written and what was left out, in stream order.
 * A stream that breaks part way keeps what was written and lists the rest as unreadable.
 */
export async function extractOutputsArchive(
  tar: NodeJS.ReadableStream,
  destDir: string,
  caps: OutputsCaps,
  options: ExtractOutputsOptions = {},
): Promise<OutputsManifest> {
  assertOutputsCaps(caps);
  const readLimit = options.readLimitBytes ?? readLimitOf(caps);
  if (!Number.isSafeInteger(readLimit) || readLimit < 0) throw new Error('extractOutputsArchive: readLimitBytes must be a non-negative integer');
  // Listen before the first await: an engine stream that fails meanwhile must not go unheard.
  const ex = extract();
  // The iterator listens for entries from its creation: one made after the first entry would miss it.
  const entries = ex[Symbol.asyncIterator]();
  const source = tar as NodeJS.ReadableStream & { destroy?: (err?: Error) => void };
  let sourceEnded = false;
  source.on('end', () => (sourceEnded = true));
  source.on('error', (err: Error) => ex.destroy(err));
  // A connection that closes without an end (the engine went away) would leave the tar waiting forever.
  source.on('close', () => {
    if (!sourceEnded) ex.destroy(new Error('the archive stream closed before its end'));
  });
  source.pipe(ex as unknown as NodeJS.WritableStream);
  const signal = options.signal;
  const onAbort = () => {
    ex.destroy(new Error('reading the outputs was stopped'));
    source.destroy?.();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const destRoot = resolve(destDir);
  await mkdir(destRoot, { recursive: true, mode: DELIVERED_DIR_MODE });
  await chmod(destRoot, DELIVERED_DIR_MODE);
  const manifest: OutputsManifest = { files: 0, bytes: 0, leftOut: [] };
  const leaveOut = (path: string, reason: LeftOut['reason'], size?: number) => {
    manifest.leftOut.push(size === undefined ? { path, reason } : { path, reason, size });
  };
  // Folders left out take everything below them along, unlisted, as copyOutputs never walks into them.
  const skipped: string[] = [];
  const underSkipped = (rel: string) => skipped.some((p) => rel.startsWith(`${p}/`));
  const destOf = (rel: string) => {
    const dest = resolve(destRoot, rel);
    if (!dest.startsWith(destRoot + sep)) throw new Error(`extractOutputsArchive: ${JSON.stringify(rel)} escapes the destination`);
    return dest;
  };

  let current: string | null = null;
  // Bytes of file entries read so far, delivered or not: what the engine had to stream.
  let read = 0;
  let stopped = false;
  try {
    if (signal?.aborted) throw new Error('reading the outputs was stopped');
    for await (const entry of { [Symbol.asyncIterator]: () => entries }) {
      const header = entry.header;
      const rel = archiveEntryPath(header.name);
      current = rel;
      try {
        if (rel === null) {
          // dockerd never writes such a name; whatever made this archive, it is not delivered.
          leaveOut(header.name, 'unreadable');
          continue;
        }
        if (rel === '' || underSkipped(rel)) continue;
        const name = posix.basename(rel);
        if (options.isReserved?.(rel, name)) {
          leaveOut(rel, reservedReason);
          skipped.push(rel);
          continue;
        }
        const kind = kindOf(header.type);
        const kindReason = kindLeftOutReason(kind);
        if (kindReason !== null) {
          leaveOut(rel, kindReason);
          continue;
        }
        if (kind === 'directory') {
          await makeDir(destOf(rel));
          continue;
        }
        const size = header.size ?? 0;
        if (read + size > readLimit) {
          // Not read at all: its bytes, and whatever follows, would pass the read bound.
          leaveOut(rel, size > caps.maxFileBytes ? 'file_too_large' : 'total_too_large', size);
          stopped = true;
          break;
        }
        read += size;
        const early = sizeLeftOutReason(size, manifest.bytes, caps);
        if (early) {
          leaveOut(rel, early, size);
          continue;
        }
        await writeEntry(rel, size, entry as AsyncIterable<Buffer>, deliveredFileMode(header.mode ?? 0o644));
      } finally {
        // Every entry's bytes must be consumed before the next header can be read (unless reading stops).
        if (!stopped) entry.resume();
      }
      current = null;
    }
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    if (/escapes the destination/.test(err.message)) throw err;
    leaveOut(current ?? '.', 'unreadable');
    // Stopped on purpose part way through a file: what came after it was never looked at either.
    if (signal?.aborted && current !== null) leaveOut('.', 'unreadable');
    source.destroy?.();
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (stopped) {
    ex.destroy();
    source.destroy?.();
  }
  return manifest;

  async function makeDir(dest: string): Promise<void> {
    await mkdir(dirname(dest), { recursive: true, mode: DELIVERED_DIR_MODE });
    try {
      await mkdir(dest, { mode: DELIVERED_DIR_MODE });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !(await lstat(dest)).isDirectory()) throw e;
    }
    // Explicit chmod: neither the umask nor the container's 0700 decides what researchers can read.
    await chmod(dest, DELIVERED_DIR_MODE);
  }

  async function writeEntry(rel: string, size: number, data: AsyncIterable<Buffer>, mode: number): Promise<void> {
    const destPath = destOf(rel);
    await mkdir(dirname(destPath), { recursive: true, mode: DELIVERED_DIR_MODE });
    // The header's size was checked; the stream is counted anyway, so no cap rests on one number.
    const allowed = Math.min(caps.maxFileBytes, caps.maxTotalBytes - manifest.bytes);
    // O_EXCL + O_NOFOLLOW: never write through anything already at the destination (a repeated name).
    let dest;
    try {
      dest = await open(destPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      leaveOut(rel, 'not_a_regular_file');
      return;
    }
    let written = 0;
    let outcome: 'ok' | LeftOut['reason'] = 'ok';
    let complete = false;
    const scan = options.scanner?.file(rel, size);
    try {
      await dest.chmod(mode);
      for await (const chunk of data) {
        if (outcome !== 'ok') continue;
        if (written + chunk.length > allowed) {
          written += chunk.length;
          outcome = written > caps.maxFileBytes ? 'file_too_large' : 'total_too_large';
          continue;
        }
        // Checked while the write is in flight: the disk and the checks share the chunk's time (a
        // threaded scanner only copies the chunk; its promise, when its buffers are full, is the
        // backpressure that keeps the worker's queue bounded).
        const writing = dest.write(chunk);
        let scanning: void | Promise<void> = undefined;
        try {
          scanning = scan?.write(chunk);
        } finally {
          await Promise.all([writing, scanning]);
        }
        written += chunk.length;
      }
      complete = true;
    } finally {
      await dest.close();
      // A stream that broke inside this file leaves no half of it behind.
      if (!complete) {
        scan?.discard();
        await unlink(destPath).catch(() => undefined);
      }
    }
    if (outcome !== 'ok') {
      scan?.discard();
      await unlink(destPath);
      leaveOut(rel, outcome, written);
      return;
    }
    scan?.end();
    manifest.files += 1;
    manifest.bytes += written;
  }
}
