/**
 * Copies what a run's container wrote to /outputs into a results folder on the host.
 *
 * Everything under /outputs was written by researcher code that also saw sensitive data, so the
 * copy trusts nothing in it: symlinks are never followed (a link to /etc/shadow or to a dataset
 * must not leak host files into a git push), special files are never opened (a fifo would hang
 * the node), and sizes are capped. The walk is sorted so two copies of the same tree give the
 * same manifest.
 */
import { constants as fsc } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, unlink, chmod, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { isErrno } from '../../scheduler/common/errors.js';
import type { LeftOut, OutputsManifest } from '../../scheduler/contract/run-spec.js';

/** Limits on what one run may deliver; a file over either is left out and listed, never cut. */
export interface OutputsCaps {
  maxFileBytes: number;
  maxTotalBytes: number;
}

/** Hooks a caller uses to keep names it reserves (or its delivery cannot carry) out of the copy. */
export interface CopyOutputsOptions {
  /**
   * True for an entry that must not be delivered; it is left out with `reservedReason`.
   * `relPath` uses `/` separators; `name` is its last segment.
   */
  isReserved?: (relPath: string, name: string) => boolean;
}

/**
 * The reason listed for reserved names (a nested `.git`, secd's own `_secd`). run-spec has no
 * dedicated reason yet; 'not_a_regular_file' is the nearest: such entries are metadata, not content.
 */
export const reservedReason: LeftOut['reason'] = 'reserved_name';

/** Mode of every delivered folder, whatever the container set: the researcher must be able to read it. */
export const DELIVERED_DIR_MODE = 0o755;
const DIR_MODE = DELIVERED_DIR_MODE;
const CHUNK = 1 << 20;

/** Mode of a delivered file: 0644, or 0755 when the container made it executable; nothing else is kept. */
export function deliveredFileMode(sourceMode: number): number {
  return (sourceMode & 0o111) !== 0 ? 0o755 : 0o644;
}

/** What an entry under /outputs is, however it was read (a folder walk or the engine's tar stream). */
export type OutputsEntryKind = 'file' | 'directory' | 'symlink' | 'other';

/** Why an entry of this kind is never delivered (links are not followed, special files not opened), or null. */
export function kindLeftOutReason(kind: OutputsEntryKind): LeftOut['reason'] | null {
  if (kind === 'symlink') return 'symlink';
  return kind === 'other' ? 'not_a_regular_file' : null;
}

/**
 * Why a file of `size` bytes is left out when `deliveredBytes` are already delivered, or null.
 * Greedy in walk order: a file that would break the total cap is left out, but smaller files after
 * it still go, so one huge checkpoint does not cost the researcher every metrics file after it.
 */
export function sizeLeftOutReason(size: number, deliveredBytes: number, caps: OutputsCaps): LeftOut['reason'] | null {
  if (size > caps.maxFileBytes) return 'file_too_large';
  if (deliveredBytes + size > caps.maxTotalBytes) return 'total_too_large';
  return null;
}

/** Throws (a bug in the caller) unless both caps are non-negative integers. */
export function assertOutputsCaps(caps: OutputsCaps): void {
  for (const [name, value] of Object.entries(caps)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`copyOutputs: ${name} must be a non-negative integer`);
  }
}

/** Copies srcDir into destDir under the caps and says what was delivered and what was left out. */
export async function copyOutputs(
  srcDir: string,
  destDir: string,
  caps: OutputsCaps,
  options: CopyOutputsOptions = {},
): Promise<OutputsManifest> {
  assertOutputsCaps(caps);
  const destRoot = resolve(destDir);
  await mkdir(destRoot, { recursive: true, mode: DIR_MODE });
  await chmod(destRoot, DIR_MODE);

  const manifest: OutputsManifest = { files: 0, bytes: 0, leftOut: [] };
  // srcDir is a host path secd chose (the run's collected /outputs), so resolving it is safe; only what
  // lies below it is untrusted. A run whose /outputs never appeared simply delivered nothing.
  let srcRoot: string;
  try {
    srcRoot = await realpath(srcDir);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return manifest;
    throw e;
  }
  const copier = new OutputsCopier(srcRoot, destRoot, caps, options, manifest);
  await copier.copyDir('');
  return manifest;
}

class OutputsCopier {
  constructor(
    private readonly srcRoot: string,
    private readonly destRoot: string,
    private readonly caps: OutputsCaps,
    private readonly options: CopyOutputsOptions,
    private readonly manifest: OutputsManifest,
  ) {}

  private leaveOut(path: string, reason: LeftOut['reason'], size?: number): void {
    this.manifest.leftOut.push(size === undefined ? { path, reason } : { path, reason, size });
  }

  /** Destination of a relative path, refusing anything that would land outside destRoot. */
  private destOf(rel: string): string {
    const dest = resolve(this.destRoot, rel);
    if (!dest.startsWith(this.destRoot + sep)) throw new Error(`copyOutputs: ${JSON.stringify(rel)} escapes the destination`);
    return dest;
  }

  async copyDir(relDir: string): Promise<void> {
    const absDir = relDir === '' ? this.srcRoot : join(this.srcRoot, relDir);
    let names: string[];
    try {
      names = await readdir(absDir);
    } catch (e) {
      if (!isErrno(e)) throw e;
      this.leaveOut(relDir === '' ? '.' : relDir, 'unreadable');
      return;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      // readdir never yields these; a name that could climb out of destDir is a bug, not an input.
      if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
        throw new Error(`copyOutputs: unexpected entry name ${JSON.stringify(name)}`);
      }
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      if (this.options.isReserved?.(rel, name)) {
        this.leaveOut(rel, reservedReason);
        continue;
      }
      let st: Stats;
      try {
        st = await lstat(join(absDir, name));
      } catch (e) {
        if (!isErrno(e)) throw e;
        this.leaveOut(rel, 'unreadable');
        continue;
      }
      const kind: OutputsEntryKind = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
      const kindReason = kindLeftOutReason(kind);
      if (kindReason !== null) {
        this.leaveOut(rel, kindReason);
      } else if (kind === 'directory') {
        const dest = this.destOf(rel);
        await mkdir(dest, { mode: DIR_MODE });
        await chmod(dest, DIR_MODE);
        await this.copyDir(rel);
      } else {
        await this.copyFile(rel, st.size);
      }
    }
  }

  private reasonIfTooBig(size: number): LeftOut['reason'] | null {
    return sizeLeftOutReason(size, this.manifest.bytes, this.caps);
  }

  private async copyFile(rel: string, lstatSize: number): Promise<void> {
    const early = this.reasonIfTooBig(lstatSize);
    if (early) {
      this.leaveOut(rel, early, lstatSize);
      return;
    }
    const srcPath = join(this.srcRoot, rel);
    let src: FileHandle;
    try {
      // O_NOFOLLOW: the entry may have been swapped for a symlink since lstat. O_NONBLOCK: or for a
      // fifo, whose open would otherwise wait forever for a writer.
      src = await open(srcPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (e) {
      if (!isErrno(e)) throw e;
      this.leaveOut(rel, isErrno(e, 'ELOOP') ? 'symlink' : 'unreadable');
      return;
    }
    try {
      const st = await src.stat();
      if (!st.isFile()) {
        this.leaveOut(rel, 'not_a_regular_file');
        return;
      }
      // O_NOFOLLOW guards only the last segment; a parent swapped for a symlink would still be
      // followed. Asking the kernel where the open file really is closes that gap.
      const where = await this.whereOpened(src);
      if (where !== null && where !== srcPath) {
        this.leaveOut(rel, where.startsWith(this.srcRoot + sep) ? 'unreadable' : 'symlink');
        return;
      }
      const late = this.reasonIfTooBig(st.size);
      if (late) {
        this.leaveOut(rel, late, st.size);
        return;
      }
      const mode = deliveredFileMode(st.mode);
      await this.writeCopy(rel, src, mode);
    } finally {
      await src.close();
    }
  }

  /** The path the kernel has for an open file, or null where /proc cannot say (not Linux). */
  private async whereOpened(handle: FileHandle): Promise<string | null> {
    if (process.platform !== 'linux') return null;
    try {
      return await readlink(`/proc/self/fd/${handle.fd}`);
    } catch {
      return null;
    }
  }

  private async writeCopy(rel: string, src: FileHandle, mode: number): Promise<void> {
    const destPath = this.destOf(rel);
    // The file may still grow after fstat; never copy more than the caps allow.
    const allowed = Math.min(this.caps.maxFileBytes, this.caps.maxTotalBytes - this.manifest.bytes);
    // O_EXCL + O_NOFOLLOW: never write through anything already at the destination.
    const dest = await open(destPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, mode);
    let copied = 0;
    let outcome: 'ok' | LeftOut['reason'] = 'ok';
    try {
      // Explicit chmod: the umask must not decide what researchers can read in their results.
      await dest.chmod(mode);
      const buf = Buffer.allocUnsafe(CHUNK);
      for (;;) {
        let n: number;
        try {
          ({ bytesRead: n } = await src.read(buf, 0, CHUNK, null));
        } catch (e) {
          if (!isErrno(e)) throw e;
          outcome = 'unreadable';
          break;
        }
        if (n === 0) break;
        if (copied + n > allowed) {
          copied += n;
          outcome = copied > this.caps.maxFileBytes ? 'file_too_large' : 'total_too_large';
          break;
        }
        await dest.write(buf, 0, n);
        copied += n;
      }
    } finally {
      await dest.close();
    }
    if (outcome !== 'ok') {
      await unlink(destPath);
      // For a file that grew while being copied, the size listed is what had been read by then.
      this.leaveOut(rel, outcome, outcome === 'unreadable' ? undefined : copied);
      return;
    }
    this.manifest.files += 1;
    this.manifest.bytes += copied;
  }
}
