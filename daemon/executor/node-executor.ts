/**
 * Executor settings from a node's configuration: shared by `secd up`, `secd node` and `secd run`, so
 * a local run and a cluster run get the same profile and limits.
 */
import { join } from 'node:path';
import type { Log } from '../../scheduler/common/log.js';
import type { LimitsConfig } from '../config/leader-config.js';
import type { ContainerEngine, OutputsVolumeMode } from '../engine/container-engine.js';
import { baseImageEnsurer } from '../ops/base-image.js';
import type { ExecutorDeps } from './executor-deps.js';
import { imageJanitor } from './image-janitor.js';

/** The node keys the executor reads. */
export interface ExecutorNodeConfig {
  node_id: string;
  work_dir: string;
  cache_root: string;
  /** Read-only file datasets (absent/null: this node serves none). */
  dataset_root?: string | null;
  memory_limit_bytes: number;
  pids_limit: number;
  base_image_mirror: string | null;
  /** node.yml disk_watermark_bytes (absent: run-delivery.ts's default). */
  disk_watermark_bytes?: number | undefined;
  /** node.yml outputs_volume (absent: disk). */
  outputs_volume?: OutputsVolumeMode | undefined;
}

/** Grace between SIGTERM and SIGKILL when a run is stopped. */
export const STOP_GRACE_MS = 10_000;

/** Build the executor's dependencies for a node. */
export function nodeExecutorDeps(
  node: ExecutorNodeConfig,
  limits: Pick<LimitsConfig, 'max_output_file_bytes' | 'max_output_total_bytes' | 'max_log_bytes'>,
  engine: ContainerEngine,
  log: Log,
  now: () => Date,
): ExecutorDeps {
  return {
    engine,
    log,
    now,
    settings: {
      nodeId: node.node_id,
      workDir: node.work_dir,
      cacheRoot: node.cache_root,
      datasetRoot: node.dataset_root ?? null,
      memoryBytes: node.memory_limit_bytes,
      pidsLimit: node.pids_limit,
      stopGraceMs: STOP_GRACE_MS,
      maxOutputFileBytes: limits.max_output_file_bytes,
      maxOutputTotalBytes: limits.max_output_total_bytes,
      maxLogBytes: limits.max_log_bytes,
      ...(node.disk_watermark_bytes !== undefined ? { diskWatermarkBytes: node.disk_watermark_bytes } : {}),
      ...(node.outputs_volume !== undefined ? { outputsVolume: node.outputs_volume } : {}),
    },
    // One per node: old project images go only while none of its builds runs.
    images: imageJanitor((imageId) => engine.removeImage(imageId)),
    // Two runs asking for one variant at once share one build.
    ensureBaseImage: baseImageEnsurer(engine, { mirror: node.base_image_mirror, cacheDir: join(node.work_dir, 'base-image') }),
  };
}
