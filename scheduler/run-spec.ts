/**
 * What a node is asked to run and what it reports back: the contract between the leader's
 * lifecycle and the node's executor (in-process for `secd up`, over the websocket for `secd node`).
 */

/** Everything a node needs to execute one run. Plain data: it travels as JSON. */
export interface RunSpec {
  runId: string;
  /** GitLab path_with_namespace (or the folder name for `secd run`); names the image. */
  project: string;
  /** Full commit sha to build. */
  commit: string;
  /** Git URL or local path to clone from; HTTP URLs carry their own credentials. */
  source: string;
  /** GitLab username of the researcher (names the cache folder). */
  user: string;
  /** Fingerprint of the key that signed the head commit, or null for `secd run`. */
  signer: string | null;
  /** Hard limit on the container's running time. */
  runforMs: number;
  /** GPU UUIDs given to this run (empty: no GPU). */
  gpus: string[];
  /** Cache folder name from secd.yml (under cache_root/<user>/), or null for none. */
  cacheDir: string | null;
  /** Where the cache appears in the container. */
  mountPath: string;
  /** Extra environment (dataset credentials); the executor adds OUTPUT_PATH, SECD, SECD_RUN_ID. */
  env: Record<string, string>;
  /** Warnings gathered by the leader (unknown secd.yml keys...), copied into run.json. */
  warnings: string[];
  /** When the leader received the push (ISO-8601 UTC). */
  createdAt: string;
  /** Git URL (with credentials) to push the results branch to; null: results stay local (`secd run`). */
  resultsRemote?: string | null;
}

/** Phases a node observes and reports while executing. */
export type RunPhase = 'building' | 'running' | 'uploading';

/** How an execution ended, as the node saw it. */
export type RunEnd = 'succeeded' | 'failed' | 'timed_out' | 'cancelled';

/** A file or folder from /outputs that was not delivered, and why. */
export interface LeftOut {
  /** Path relative to /outputs. */
  path: string;
  reason: 'symlink' | 'file_too_large' | 'total_too_large' | 'not_a_regular_file' | 'reserved_name' | 'unreadable';
  size?: number;
}

/** What the outputs copy delivered. */
export interface OutputsManifest {
  files: number;
  bytes: number;
  leftOut: LeftOut[];
}

/** The node's final word on a run. */
export interface RunOutcome {
  end: RunEnd;
  /** One line a researcher can act on. */
  reason: string;
  exitCode: number | null;
  imageId: string | null;
  /** The results branch pushed, or null (local `secd run`, or push failed). */
  branch: string | null;
  /** Where the outputs landed: a repo path (cluster) or a local folder (`secd run`). */
  outputsPath: string | null;
  startedAt: string | null;
  finishedAt: string;
}

/** The `_secd/run.json` written next to the outputs (snake_case, as in the API). */
export interface RunReport {
  run_id: string;
  project: string;
  commit: string;
  user: string;
  signer_fingerprint: string | null;
  node: string;
  gpus: string[];
  image_id: string | null;
  state: RunEnd;
  reason: string;
  exit_code: number | null;
  created_at: string;
  build_started_at: string | null;
  started_at: string | null;
  finished_at: string;
  timings_ms: { build: number | null; run: number | null };
  runfor_ms: number;
  warnings: string[];
  outputs: { files: number; bytes: number; left_out: LeftOut[] };
}
