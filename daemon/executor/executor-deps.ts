/**
 * What the executor is given and what one execution is asked for: the node's settings, its engine,
 * log and clock (wired by main, see node-executor.ts), and the callbacks of one run. Apart from the
 * executor's steps so that run-executor.ts and run-delivery.ts share them without importing each other.
 */
import type { Log } from '../../scheduler/common/log.js';
import type { RunPhase } from '../../scheduler/contract/run-spec.js';
import type { ContainerEngine, OutputsVolumeMode } from '../engine/container-engine.js';
import type { BaseImageVariant } from '../ops/base-image-variants.js';
import type { ImageJanitor } from './image-janitor.js';

/** Node settings the executor applies to every run. */
export interface ExecutorSettings {
  nodeId: string;
  workDir: string;
  cacheRoot: string;
  memoryBytes: number;
  pidsLimit: number;
  stopGraceMs: number;
  maxOutputFileBytes: number;
  maxOutputTotalBytes: number;
  /** Cap of each of build.log and run.log (head and tail kept). */
  maxLogBytes: number;
  /** Where file datasets live on this node (node.yml dataset_root); null/absent: none. */
  datasetRoot?: string | null;
  /** Docker network for the build's RUN steps (node.yml `build.network`, DESIGN §12); absent/null: none. */
  buildNetwork?: string | null;
  /** Variables every RUN step of a build sees (node.yml `build.env`), whether or not the Dockerfile declares an ARG. */
  buildEnv?: Record<string, string>;
  /** Free space under work_dir below which runs are not started or fail while collecting (node.yml disk_watermark_bytes). */
  diskWatermarkBytes?: number;
  /** How each run's /outputs volume is capped while it runs (node.yml outputs_volume); absent: `disk`, uncapped. */
  outputsVolume?: OutputsVolumeMode;
  /** The image a `tmpfs` volume's holder sleeps in (absent: secd/base, built on first use). */
  outputsHolderImage?: string;
}

/** What the executor is given by main. */
export interface ExecutorDeps {
  engine: ContainerEngine;
  log: Log;
  now(): Date;
  settings: ExecutorSettings;
  /** The node's builds and the old project images they leave (absent: an old image is removed at once). */
  images?: ImageJanitor;
  /** Build `secd/base` (or the variant named) if it is missing (progress lines go to the build log). */
  ensureBaseImage(onProgress: (line: string) => void, variant?: BaseImageVariant): Promise<void>;
}

/** Callbacks and options of one execution. */
export interface ExecuteOptions {
  onPhase(phase: RunPhase, at: string): void;
  /** Streamed build output (secd run prints it). */
  onBuildLog?(line: string): void;
  /** Streamed container output. */
  onRunLog?(chunk: Buffer): void;
  /** Abort to cancel; `signal.reason` (a string) becomes the run's reason. */
  signal?: AbortSignal;
  /** `secd run <dir>`: build this folder's working tree and write results under `resultsRoot`. */
  local?: {
    dir: string;
    resultsRoot: string;
    /** `secd run --dataset NAME=DIR`: host folders mounted read-only at /datasets/NAME, as a file dataset is on a node. */
    datasets?: Array<{ name: string; dir: string }>;
  };
}
