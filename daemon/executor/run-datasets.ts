/**
 * A run's datasets and cache on the node: the read-only file dataset mounts, the dataset socket
 * (forwarder) and its mount, and what run.json says about them afterwards. The socket admits only
 * the run's own account, DB_USER in its spec.
 */
import { join } from 'node:path';
import { errorText } from '../../scheduler/common/errors.js';
import { DATASET_SOCKET_DIR } from '../../scheduler/contract/container-paths.js';
import { cacheOwnerOf, measureCache, resolveCacheDir } from '../../storage/cache-path.js';
import { DATASETS_MOUNT, resolveDatasetDir } from '../../storage/dataset-path.js';
import type { BindMount } from '../engine/container-engine.js';
import { startDatasetForwarder, type DatasetForwarder, type ForwardedBytes, type RefusedSession } from './dataset-forwarder.js';
import type { RunReport, RunSpec } from '../../scheduler/contract/run-spec.js';

/** A run's dataset mounts and its running forwarder (null without MySQL datasets). */
export interface PreparedDatasets {
  mounts: BindMount[];
  forwarder: DatasetForwarder | null;
}

/** The folder on the node that holds a run's dataset socket (bound at /run/mysqld). */
export function datasetSocketDir(runDir: string): string {
  return join(runDir, 'db');
}

/**
 * Resolve the run's file datasets under `datasetRoot` and start its dataset socket. A dataset that
 * cannot be found safely is the run's failure reason; nothing is left running when it fails.
 */
export async function prepareRunDatasets(
  spec: RunSpec,
  node: { datasetRoot: string | null; runDir: string },
): Promise<{ ok: true; value: PreparedDatasets } | { ok: false; reason: string }> {
  const mounts: BindMount[] = [];
  for (const file of spec.datasets?.files ?? []) {
    if (node.datasetRoot === null) {
      return { ok: false, reason: `dataset ${file.name} is a file dataset, but this node has no dataset_root` };
    }
    const dir = await resolveDatasetDir(node.datasetRoot, file.name, file.path);
    if (!dir.ok) return { ok: false, reason: dir.reason };
    mounts.push({ source: dir.path, target: `${DATASETS_MOUNT}/${file.name}`, readOnly: true });
  }
  let forwarder: DatasetForwarder | null = null;
  const target = spec.datasets?.mysql ?? null;
  if (target !== null) {
    // The socket admits only the account the leader created for this run (issue 13).
    const user = spec.env.DB_USER;
    if (!user) return { ok: false, reason: 'the run has a dataset server but no DB_USER account to admit on its socket' };
    try {
      forwarder = await startDatasetForwarder(datasetSocketDir(node.runDir), target, { user });
    } catch (err) {
      return { ok: false, reason: `the dataset socket could not be started: ${errorText(err)}` };
    }
    mounts.push({ source: forwarder.dir, target: DATASET_SOCKET_DIR, readOnly: true });
  }
  return { ok: true, value: { mounts, forwarder } };
}

/** What run.json says about the run's datasets and cache, and the socket's bytes for the leader. */
export interface DatasetsAfterRun {
  report: Pick<RunReport, 'cache' | 'datasets'>;
  bytes: ForwardedBytes | null;
  /** Sessions the socket refused (another account's name, TLS, COM_CHANGE_USER...), for the node's log. */
  refused: RefusedSession[];
}

/** Close the run's dataset socket (if any) and measure its cache (if any). Never throws. */
export async function finishRunDatasets(
  spec: RunSpec,
  prepared: PreparedDatasets | null,
  node: { cacheRoot: string },
): Promise<DatasetsAfterRun> {
  const bytes = prepared?.forwarder ? await prepared.forwarder.close().catch(() => prepared.forwarder!.bytes()) : null;
  const refused = prepared?.forwarder?.refused() ?? [];
  const report: DatasetsAfterRun['report'] = {};
  const catalog = parseCatalog(spec.env.SECD_DATASETS);
  if (catalog.length > 0) {
    report.datasets = {
      names: catalog,
      mysql_user: spec.env.DB_USER ?? null,
      bytes_from_server: bytes?.fromServer ?? null,
      bytes_to_server: bytes?.toServer ?? null,
    };
  }
  if (spec.cacheDir !== null) {
    const cache = await resolveCacheDir(node.cacheRoot, cacheOwnerOf(spec), spec.cacheDir).catch(() => null);
    if (cache?.ok) {
      const size = await measureCache(cache.path);
      // `path` (under cache_root: @<user id>/<cache_dir>) says which folder was used.
      report.cache = { dir: spec.cacheDir, path: cache.relative, mount_path: spec.mountPath, ...size };
    }
  }
  return { report, bytes, refused };
}

function parseCatalog(text: string | undefined): string[] {
  if (!text) return [];
  try {
    const parsed = JSON.parse(text) as unknown;
    return parsed && typeof parsed === 'object' ? Object.keys(parsed).sort() : [];
  } catch {
    return [];
  }
}
