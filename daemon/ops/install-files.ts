/**
 * How `secd install` touches files: folders with their modes, files written beside and renamed so a
 * reader (systemd, a running secd) never sees half of one, and the two ownerships — files secd owns
 * are kept current, files the operator edits are written only when missing. The calls that change a
 * path the operator should hear about return its report line.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from '../../scheduler/common/errors.js';

/** One line of the report: what happened to one path, or a note for the operator. */
export interface InstallStep {
  action: 'created' | 'updated' | 'unchanged' | 'kept' | 'note' | 'warning';
  /** The path on the target machine (without the staging root). */
  path: string | null;
  detail: string;
}

/** A file's text, or null when there is none. */
export async function readOrNull(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
}

/** Makes `dir` (and its parents, 0755) with `mode`; says whether it was there already. */
export async function ensureDir(dir: string, mode: number): Promise<boolean> {
  const existed = await fs.stat(dir).then(
    () => true,
    () => false,
  );
  // Parents (/var/lib, /mnt in a staging tree) get the usual 0755; only the folder itself gets `mode`.
  await fs.mkdir(path.dirname(dir), { recursive: true, mode: 0o755 });
  await fs.mkdir(dir, { recursive: true, mode });
  return existed;
}

/** A folder the report names: created with `mode`, or (with `enforceMode`) set back to it. */
export async function ensureDirStep(full: string, shown: string, mode: number, enforceMode = false): Promise<InstallStep> {
  const existed = await ensureDir(full, mode);
  const modeText = `mode ${mode.toString(8).padStart(4, '0')}`;
  if (!existed) {
    await fs.chmod(full, mode); // mkdir's mode is filtered by the umask
    return { action: 'created', path: shown, detail: `folder, ${modeText}` };
  }
  if (enforceMode && ((await fs.stat(full)).mode & 0o7777) !== mode) {
    await fs.chmod(full, mode);
    return { action: 'updated', path: shown, detail: `folder set to ${modeText}` };
  }
  return { action: 'unchanged', path: shown, detail: 'folder exists' };
}

/** Writes `text` with `mode`, atomically. */
export async function writeFileMode(file: string, text: string, mode: number): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  // Write beside and rename: a reader (systemd, a running secd) never sees half a file.
  const partial = `${file}.secd-install-${process.pid}`;
  await fs.writeFile(partial, text, { mode });
  await fs.chmod(partial, mode);
  await fs.rename(partial, file);
}

/** A file secd owns: written when missing or different. */
export async function writeOwned(full: string, shown: string, text: string, mode: number): Promise<InstallStep> {
  const existing = await readOrNull(full);
  if (existing === text) return { action: 'unchanged', path: shown, detail: 'up to date' };
  await writeFileMode(full, text, mode);
  return { action: existing === null ? 'created' : 'updated', path: shown, detail: existing === null ? 'written' : 'brought up to date' };
}

/** A file the operator edits: written only when missing. */
export async function writeOperatorFile(full: string, shown: string, text: string, mode: number, what: string): Promise<InstallStep> {
  const existing = await readOrNull(full);
  if (existing === text) return { action: 'unchanged', path: shown, detail: `${what}, not edited yet` };
  if (existing !== null) return { action: 'kept', path: shown, detail: 'differs from the template: yours is kept' };
  await writeFileMode(full, text, mode);
  return { action: 'created', path: shown, detail: what };
}
