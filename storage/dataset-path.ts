/**
 * Names and folders of datasets: what a dataset may be called, which MySQL database names secd
 * accepts, and how a file dataset's folder is found under a node's `dataset_root` without ever
 * leaving it (no "..", no symlinked component, the real path checked against the root).
 *
 * Choices made here:
 * - Dataset names are 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit: they appear in
 *   secd.yml, in `/datasets/<name>` inside the container and in docker mount specs.
 * - MySQL database names are 1-64 of `[A-Za-z0-9_$-]`: no quoting tricks reach a GRANT, and "%" (a
 *   GRANT wildcard) is never accepted. "_" is a wildcard in database-level GRANTs too; the grants
 *   module escapes it, so `sales_2024` never also opens `salesX2024`.
 * - A file dataset is stored relative to `dataset_root`, because nodes may mount the same export at
 *   different places; each node resolves it against its own root at run time.
 * - Files *inside* a dataset may be symlinks: they resolve in the container's own file system, so
 *   they cannot reach the node's files.
 */
import { lstat, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';

const DATASET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MYSQL_DATABASE = /^[A-Za-z0-9_$-]{1,64}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/** Where a file dataset appears inside the container. */
export const DATASETS_MOUNT = '/datasets';

/** Null when `name` can name a dataset, else why not. */
export function datasetNameProblem(name: string): string | null {
  if (DATASET_NAME.test(name)) return null;
  return `dataset name "${name}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`;
}

/** Null when `db` is a MySQL database name secd will grant on, else why not. */
export function mysqlDatabaseProblem(db: string): string | null {
  if (MYSQL_DATABASE.test(db)) return null;
  return `MySQL database name "${db}" must be 1-64 letters, digits, "_", "$" or "-"`;
}

/**
 * Null when `rel` is a folder path secd accepts under dataset_root (relative, segments of
 * `[A-Za-z0-9._-]`, no "." or ".." segments), else why not.
 */
export function datasetPathProblem(rel: string): string | null {
  if (rel.length === 0) return 'the dataset folder must not be empty';
  if (rel.startsWith('/')) return `the dataset folder "${rel}" must be relative to dataset_root`;
  const parts = rel.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || !SEGMENT.test(p))) {
    return `the dataset folder "${rel}" must be made of [A-Za-z0-9._-] segments separated by "/", without "." or ".."`;
  }
  return null;
}

/**
 * Turn what an operator typed for `--path` into the stored relative path: a relative path as is, an
 * absolute one only when it lies under `datasetRoot` (when the config names one).
 */
export function relativeDatasetPath(typed: string, datasetRoot: string | null): { ok: true; path: string } | { ok: false; reason: string } {
  let rel = typed.replace(/\/+$/, '');
  if (isAbsolute(rel)) {
    if (datasetRoot === null) {
      return { ok: false, reason: `--path ${typed} is absolute, but this config names no dataset_root: give the folder relative to dataset_root` };
    }
    const within = relative(datasetRoot, rel);
    if (within === '' || within.startsWith('..') || isAbsolute(within)) {
      return { ok: false, reason: `--path ${typed} is not under dataset_root (${datasetRoot})` };
    }
    rel = within.split(sep).join('/');
  }
  const problem = datasetPathProblem(rel);
  return problem ? { ok: false, reason: problem } : { ok: true, path: rel };
}

/** Outcome of finding a file dataset's folder on this node. */
export type DatasetDirResult = { ok: true; path: string } | { ok: false; reason: string };

/** Resolve `rel` under `datasetRoot` to a real folder, refusing symlinked components and escapes. */
export async function resolveDatasetDir(datasetRoot: string, name: string, rel: string): Promise<DatasetDirResult> {
  const problem = datasetPathProblem(rel);
  if (problem) return { ok: false, reason: `dataset ${name}: ${problem}` };
  let root: string;
  try {
    root = await realpath(datasetRoot);
  } catch {
    return { ok: false, reason: `dataset ${name}: this node's dataset_root ${datasetRoot} does not exist` };
  }
  let current = root;
  for (const part of rel.split('/')) {
    current = join(current, part);
    const info = await lstat(current).catch(() => null);
    if (info === null) return { ok: false, reason: `dataset ${name}: folder ${rel} is missing under this node's dataset_root` };
    if (info.isSymbolicLink()) return { ok: false, reason: `dataset ${name}: ${part} in ${rel} is a symlink; secd refuses symlinks in dataset paths` };
    if (!info.isDirectory()) return { ok: false, reason: `dataset ${name}: ${part} in ${rel} is not a folder` };
  }
  const real = await realpath(current);
  if (!real.startsWith(root + sep)) return { ok: false, reason: `dataset ${name}: ${rel} resolves outside dataset_root` };
  return { ok: true, path: real };
}
