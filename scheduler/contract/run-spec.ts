/**
 * What a node is asked to run and what it reports back: the contract between the leader's
 * lifecycle and the node's executor (in-process for `secd up`, over the websocket for `secd node`).
 */

import type { z } from 'zod';
import type { DisclosureFinding, ReleasePolicy } from './disclosure.js';
import type { runEndSchema, runOutcomeSchema, runPhaseSchema, runSpecSchema } from './protocol.js';

// The schemas in protocol.ts are the one source of truth: these types are what they accept.

/** Everything a node needs to execute one run. Plain data: it travels as JSON (see runSpecSchema). */
export type RunSpec = z.infer<typeof runSpecSchema>;

/** Phases a node observes and reports while executing. */
export type RunPhase = z.infer<typeof runPhaseSchema>;

/** How an execution ended, as the node saw it. */
export type RunEnd = z.infer<typeof runEndSchema>;

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

/** The node's final word on a run (see runOutcomeSchema). */
export type RunOutcome = z.infer<typeof runOutcomeSchema>;

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
  /** The researcher's cache after the run (absent: no cache_dir); symlinks are counted, never followed. */
  cache?: { dir: string; mount_path: string; bytes: number; files: number; /** under cache_root: `@<user id>/<dir>` (or `<user>/<dir>` without an id) */ path?: string };
  /** What the run could read (absent: no datasets). Never a password. */
  datasets?: { names: string[]; mysql_user: string | null; bytes_from_server: number | null; bytes_to_server: number | null };
  /** How the run's outputs leave the cluster (DESIGN §10); absent: a run.json from before output release. */
  release?: ReleasePolicy;
  /** What the disclosure checks flagged in the outputs and logs (never a cell's value); absent: as release. */
  disclosure?: DisclosureFinding[];
}
