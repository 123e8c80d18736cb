/**
 * The leader <-> node protocol (DESIGN §7): every websocket message is one JSON object whose `type`
 * picks its schema. Both ends parse with `parseNodeMessage` / `parseLeaderMessage`; a message that
 * fails its schema is logged and dropped by the caller, never thrown at it.
 *
 * The run contract (RunSpec, RunOutcome) travels inside these messages in the camelCase shape the
 * executor uses; the messages' own fields are snake_case like the HTTP API.
 *
 * Delivery rules (what makes a lost connection harmless):
 * - `run.assign` is idempotent by run id; the leader re-sends it until the node answers `run.ack`,
 *   which the node sends only once the spec is on its disk.
 * - `run.result` is re-sent by the node (which keeps it on disk) until the leader answers
 *   `run.result.ack`, which the leader sends only once the result is in SQLite.
 * - `hello` lists every run the node still holds, so a restarted leader (or a node back from a
 *   network cut) reconciles instead of guessing.
 * - Every leader -> node message carries `epoch`, the sending leader's lease epoch (DESIGN §11;
 *   leaders sharing one state database, one active at a time, each takeover a higher epoch). The node
 *   remembers the newest it has seen and drops a message of an older one, closing that connection:
 *   it comes from an ex-leader. Required: every leader-side sender stamps it (RemoteNode.send,
 *   scheduler/cluster/remote-node.ts); a sole SQLite leader has one too (a new one each start).
 */
import { z } from 'zod';
import { RUN_ID_PATTERN } from './run-id.js';
import { isCommitId } from './commit-id.js';
import { disclosureFindingSchema, MAX_DISCLOSURE_FINDINGS, runReleaseSchema } from './disclosure.js';

/** Bumped when a message changes incompatibly; the leader refuses nodes speaking another version. */
export const PROTOCOL_VERSION = 1;

/** Largest message either end accepts (a spec with many warnings is a few KiB; a status of 8 GPUs less). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;

/**
 * Run ids name folders (`work_dir/runs/<id>`), containers and branches on the node, so the wire only
 * carries ids made of safe characters.
 */
export const runIdSchema = z.string().regex(RUN_ID_PATTERN, 'must be a run id (letters, digits, "_" or "-")');

/** Node ids as daemon/config/node-config.ts accepts them (hostname-like). */
export const nodeIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be a node id');

/**
 * Length limits on what a node (or a leader) may put in a message, so that no name or list it sends
 * grows the leader's views, the status page's feed or the run table beyond what a real cluster needs
 * (issue 13, finding 6). Ids and structure over a limit are refused; free text a person reads
 * (reasons, GPU names, warnings) is cut with "…" instead, so a long reason never turns a result into
 * one the node re-sends for ever.
 */
export const PROTOCOL_LIMITS = {
  /** Characters of a hostname (DNS allows 253). */
  hostname: 255,
  /** Characters of a GPU UUID (nvidia-smi's are 40). */
  gpuUuid: 128,
  /** Characters of a GPU's model name as shown (nvidia-smi's are under 64). */
  gpuName: 256,
  /** GPUs of one node. */
  gpus: 64,
  /** Characters of one project path (GitLab allows 255 per segment). */
  project: 512,
  /** Projects in a node's image list. */
  images: 10_000,
  /** Runs a node may list in `hello`. */
  heldRuns: 10_000,
  /** Characters of a reason or message shown to a person. */
  reason: 2_000,
  /** Characters of a failed build's last build.log lines in a result (BUILD_LOG_TAIL_LINES of them). */
  buildLogTail: 8_000,
  /** Warnings in a spec (the rest are summed up in one line). */
  warnings: 100,
  /** Characters of a path, URL or image id. */
  path: 4_096,
  /** Characters of an error code or a time. */
  token: 64,
} as const;

/** Free text cut to `max` characters ("…" at the end) rather than refused. */
export function clippedText(max: number) {
  return z.string().transform((s) => (s.length > max ? `${s.slice(0, max - 1)}…` : s));
}

const reasonText = clippedText(PROTOCOL_LIMITS.reason);
/** Lines a failed build's result carries of its build.log: the last ones, where the error is. */
export const BUILD_LOG_TAIL_LINES = 20;
/** Text of which the end matters (a log's tail): cut at the front. */
const tailText = (max: number) => z.string().transform((s) => (s.length > max ? `…${s.slice(s.length - max + 1)}` : s));
const pathText = z.string().max(PROTOCOL_LIMITS.path);

const isoTime = z.string().max(PROTOCOL_LIMITS.token).refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 time');
const count = z.number().int().nonnegative();
/** A measurement the hardware may report as N/A: null, never 0. */
const reading = z.number().nullable();

/** Phases a node observes and reports while executing. */
export const runPhaseSchema = z.enum(['building', 'running', 'uploading']);

/** How an execution ended, as the node saw it. */
export const runEndSchema = z.enum(['succeeded', 'failed', 'timed_out', 'cancelled']);

/** Everything a node needs to execute one run. */
export const runSpecSchema = z.object({
  runId: runIdSchema,
  /** GitLab path_with_namespace (or the folder name for `secd run`); names the image. */
  project: z.string().min(1).max(PROTOCOL_LIMITS.project),
  /** Full commit sha to build (`working-tree` for a `secd run` folder that is not a repository). */
  commit: z.string().refine((c) => isCommitId(c) || c === 'working-tree', 'must be a full commit sha'),
  /** Git URL or local path to clone from; HTTP URLs carry their own credentials. */
  source: pathText.min(1),
  /** GitLab username of the researcher (for display; names the cache folder only without userId). */
  user: z.string().min(1).max(255),
  /**
   * GitLab user id of the researcher: keys the cache folder (cache_root/@<id>/). Optional so that an
   * older leader's specs still parse; `secd run` has none.
   */
  userId: z.number().int().positive().optional(),
  /** Fingerprint of the key that signed the head commit, or null for `secd run`. */
  signer: z.string().max(PROTOCOL_LIMITS.token * 2).nullable(),
  /** Hard limit on the container's running time. */
  runforMs: z.number().int().positive(),
  /** GPU UUIDs given to this run (empty: no GPU). */
  gpus: z.array(z.string().min(1).max(PROTOCOL_LIMITS.gpuUuid)).max(PROTOCOL_LIMITS.gpus),
  /** Cache folder name from secd.yml (under cache_root/@<user id>/, or cache_root/<user>/ without one), or null for none. */
  cacheDir: z.string().min(1).max(255).nullable(),
  /** Where the cache appears in the container. */
  mountPath: pathText.min(1),
  /** Extra environment (dataset credentials); the executor adds OUTPUT_PATH, SECD, SECD_RUN_ID. */
  env: z.record(z.string(), z.string()),
  /** Warnings gathered by the leader (unknown secd.yml keys...), copied into run.json. */
  warnings: z
    .array(clippedText(PROTOCOL_LIMITS.reason))
    .transform((w) =>
      w.length > PROTOCOL_LIMITS.warnings
        ? [...w.slice(0, PROTOCOL_LIMITS.warnings - 1), `${w.length - PROTOCOL_LIMITS.warnings + 1} more warnings left out`]
        : w,
    ),
  /** When the leader received the push (ISO-8601 UTC). */
  createdAt: isoTime,
  /** Git URL (with credentials) to push the results branch to; null: results stay local (`secd run`). */
  resultsRemote: pathText.min(1).nullable().optional(),
  /** The run's datasets (issue 4): where its dataset socket forwards to, and file datasets to mount. */
  datasets: z
    .object({
      mysql: z.object({ host: z.string().min(1).max(PROTOCOL_LIMITS.hostname), port: z.number().int().min(1).max(65535) }).nullable(),
      files: z.array(z.object({ name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), path: pathText.min(1) })).max(256),
    })
    .optional(),
  /**
   * Output release (DESIGN §10): the run's policy and the disclosure checks to run on its outputs.
   * Absent (an older leader, or `secd run`): policy `direct` and the default checks. The node pushes
   * to `resultsRemote` either way: for a `review` run the leader gives the review project's URL.
   */
  release: runReleaseSchema.optional(),
});

/** The node's final word on a run. */
export const runOutcomeSchema = z.object({
  end: runEndSchema,
  /** One line a researcher can act on. */
  reason: reasonText,
  exitCode: z.number().int().nullable(),
  imageId: z.string().max(PROTOCOL_LIMITS.path).nullable(),
  /** The results branch pushed, or null (local `secd run`, or push failed). */
  branch: z.string().max(PROTOCOL_LIMITS.path).nullable(),
  /** Where the outputs landed: a repo path (cluster) or a local folder (`secd run`). */
  outputsPath: pathText.nullable(),
  startedAt: isoTime.nullable(),
  finishedAt: isoTime,
  /** Bytes the run's dataset socket carried (absent: the run had no MySQL dataset). */
  datasetBytes: z.object({ fromServer: count, toServer: count }).nullable().optional(),
  /** The results commit pushed as `branch` (what a review approves and a release pushes on). */
  resultsCommit: z.string().refine(isCommitId, 'must be a full commit sha').nullable().optional(),
  /** What the disclosure checks flagged in the outputs and logs (absent: an older node). */
  disclosure: z.array(disclosureFindingSchema).max(MAX_DISCLOSURE_FINDINGS + 1).optional(),
  /**
   * A failed build's last build.log lines, for the run page; only for a `direct` run (a review run's
   * logs wait for review with its outputs). Absent: every other run, and an older node.
   */
  buildLogTail: tailText(PROTOCOL_LIMITS.buildLogTail).optional(),
});

/** One MIG device (a slice of a MIG-mode GPU): what a run gets instead of the whole GPU. */
export const migDeviceSchema = z.object({
  /** `MIG-…`, as `nvidia-smi -L` lists it; what the container is given. */
  uuid: z.string().min(1).max(PROTOCOL_LIMITS.gpuUuid),
  /** The device's index within its GPU (`Device N` of `nvidia-smi -L`, `<index>` of `-q -x`). */
  index: count,
  /** The profile, such as `3g.40gb`. */
  profile: z.string().min(1).max(PROTOCOL_LIMITS.token),
  memory_total_bytes: count.nullable(),
});

/** One GPU as the node's inventory lists it. */
export const inventoryGpuSchema = z.object({
  uuid: z.string().min(1).max(PROTOCOL_LIMITS.gpuUuid),
  index: count,
  name: clippedText(PROTOCOL_LIMITS.gpuName),
  memory_total_bytes: count.nullable(),
  /**
   * Whether MIG is on (null: the GPU or driver cannot say; absent: an older node). A MIG-mode GPU is
   * never given whole: its `mig_devices` are.
   */
  mig_mode: z.boolean().nullable().optional(),
  mig_devices: z.array(migDeviceSchema).max(PROTOCOL_LIMITS.gpus).optional(),
});

/**
 * A GPU's health as the node reads it from nvidia-smi: `ok`; `busy_foreign` (processes that are not
 * secd's); `lost` (`[GPU is lost]`, a GPU fallen off the bus, or one missing from a later report);
 * `error` (`[Unknown Error]`, an Xid event, a GPU that needs a reset). Only `ok` GPUs are given out.
 */
export const gpuHealthSchema = z.enum(['ok', 'busy_foreign', 'lost', 'error']);

/** Where a run the node holds stands: a phase, `assigned` (spec on disk, not started) or `finished` (result not yet acknowledged). */
export const heldRunPhaseSchema = z.enum(['assigned', 'building', 'running', 'uploading', 'finished']);

/** A run the node still holds, as `hello` reports it. */
export const heldRunSchema = z.object({
  run_id: runIdSchema,
  phase: heldRunPhaseSchema,
  /** Set exactly when phase is `finished`. */
  outcome: runOutcomeSchema.nullable(),
});

/** One GPU's sample in a `status` message (null: the hardware reports N/A). */
export const gpuStatusSchema = z.object({
  uuid: z.string().min(1).max(PROTOCOL_LIMITS.gpuUuid),
  index: count,
  utilization_pct: reading,
  memory_used_bytes: reading,
  memory_total_bytes: reading,
  temperature_c: reading,
  power_w: reading,
  /** Processes on the GPU, secd's or not. */
  processes: count,
  /** Busy with processes that are not secd's runs: the leader gives it to nobody. */
  foreign_busy: z.boolean(),
  /** Absent: an older node (read as `busy_foreign` or `ok` from `foreign_busy`). */
  health: gpuHealthSchema.optional(),
  /** What nvidia-smi said of a GPU that is not `ok` or `busy_foreign` (one line), else null. */
  problem: reasonText.nullable().optional(),
});

/** Host figures in a `status` message. */
export const hostStatusSchema = z.object({
  load: reading,
  cpus: count,
  memory_total_bytes: count,
  memory_free_bytes: count,
  disk_total_bytes: count.nullable(),
  disk_free_bytes: count.nullable(),
});

/** Projects whose image a node holds (the planner prefers such a node: the build is then mostly cached). */
const imagesField = z.array(z.string().min(1).max(PROTOCOL_LIMITS.project)).max(PROTOCOL_LIMITS.images);

/** Node -> leader, first message on every connection. */
export const helloMessage = z.object({
  type: z.literal('hello'),
  protocol: z.number().int(),
  node_id: nodeIdSchema,
  hostname: z.string().min(1).max(PROTOCOL_LIMITS.hostname),
  inventory: z.object({
    gpus: z.array(inventoryGpuSchema).max(PROTOCOL_LIMITS.gpus),
    cpus: count,
    memory_bytes: count,
  }),
  /** How many CPU-only runs the node runs at once. */
  max_cpu_runs: count,
  /** Every run the node still holds (spec on disk), with its phase or its unacknowledged outcome. */
  runs: z.array(heldRunSchema).max(PROTOCOL_LIMITS.heldRuns),
  images: imagesField.optional(),
});

/** Node -> leader, every `report_interval_ms`. */
export const statusMessage = z.object({
  type: z.literal('status'),
  at: isoTime,
  gpus: z.array(gpuStatusSchema).max(PROTOCOL_LIMITS.gpus),
  host: hostStatusSchema,
  /** Present when the node's images changed since its last hello or status. */
  images: imagesField.optional(),
  /**
   * Set while nvidia-smi fails (a non-zero exit): `gpus` is then the last inventory that could be
   * read, its readings unknown, kept rather than reported as zero GPUs. Absent or null: fresh.
   */
  gpus_stale: z.object({ since: isoTime, reason: reasonText }).nullable().optional(),
  /**
   * Set while work_dir's filesystem has less free space than the node's disk watermark: the node's
   * sentence (free space, watermark). The leader places no new run there meanwhile. Absent or null: fine.
   */
  disk_low: reasonText.nullable().optional(),
});

/** Node -> leader: the spec of this run is on the node's disk; stop re-sending `run.assign`. */
export const runAckMessage = z.object({ type: z.literal('run.ack'), run_id: runIdSchema });

/** Node -> leader: a run reached a phase. */
export const runEventMessage = z.object({ type: z.literal('run.event'), run_id: runIdSchema, phase: runPhaseSchema, at: isoTime });

/** Node -> leader: a run ended (re-sent until `run.result.ack`). */
export const runResultMessage = z.object({ type: z.literal('run.result'), run_id: runIdSchema, outcome: runOutcomeSchema });

/** The sending leader's lease epoch, on every leader -> node message (see the header). */
const leaderEpoch = { epoch: z.number().int().nonnegative() };

/** Leader -> node: the hello was accepted. */
export const welcomeMessage = z.object({
  type: z.literal('welcome'),
  protocol: z.number().int(),
  node_id: nodeIdSchema,
  /** How often the leader expects `status`; a node silent for `node_timeout_ms` is down. */
  node_timeout_ms: z.number().int().positive(),
  ...leaderEpoch,
});

/** Leader -> node: run this (idempotent by run id; re-sent until `run.ack`). */
export const runAssignMessage = z.object({ type: z.literal('run.assign'), spec: runSpecSchema, ...leaderEpoch });

/** Leader -> node: the result is recorded; forget it. */
export const runResultAckMessage = z.object({ type: z.literal('run.result.ack'), run_id: runIdSchema, ...leaderEpoch });

/** Leader -> node: stop this run; its partial outputs are still delivered. */
export const runCancelMessage = z.object({ type: z.literal('run.cancel'), run_id: runIdSchema, reason: reasonText.pipe(z.string().min(1)), ...leaderEpoch });

/** Leader -> node: why the leader is about to close the connection (protocol mismatch, revoked...). */
export const errorMessage = z.object({ type: z.literal('error'), code: z.string().min(1).max(PROTOCOL_LIMITS.token), message: reasonText, ...leaderEpoch });

/** Every message a node sends. */
export const nodeMessageSchema = z.discriminatedUnion('type', [helloMessage, statusMessage, runAckMessage, runEventMessage, runResultMessage]);

/** Every message a leader sends. */
export const leaderMessageSchema = z.discriminatedUnion('type', [
  welcomeMessage,
  runAssignMessage,
  runResultAckMessage,
  runCancelMessage,
  errorMessage,
]);

/** A message from a node. */
export type NodeMessage = z.infer<typeof nodeMessageSchema>;
/** A message from the leader. */
export type LeaderMessage = z.infer<typeof leaderMessageSchema>;
/** The node's first message. */
export type HelloMessage = z.infer<typeof helloMessage>;
/** The node's periodic report. */
export type StatusMessage = z.infer<typeof statusMessage>;
/** A run a node holds, as `hello` lists it. */
export type HeldRun = z.infer<typeof heldRunSchema>;
/** One GPU of a node's inventory. */
export type InventoryGpu = z.infer<typeof inventoryGpuSchema>;
/** One GPU's sample. */
export type GpuStatus = z.infer<typeof gpuStatusSchema>;
/** One MIG device of an inventory GPU. */
export type MigDevice = z.infer<typeof migDeviceSchema>;
/** A GPU's health. */
export type GpuHealth = z.infer<typeof gpuHealthSchema>;
/** Host figures of a status. */
export type HostStatus = z.infer<typeof hostStatusSchema>;

/** A message that parsed, or a one-line reason it was dropped. */
export type ParsedMessage<T> = { ok: true; message: T } | { ok: false; reason: string };

/** Parse one frame from a node; never throws. */
export function parseNodeMessage(data: string): ParsedMessage<NodeMessage> {
  return parseWith(nodeMessageSchema, data);
}

/** Parse one frame from the leader; never throws. */
export function parseLeaderMessage(data: string): ParsedMessage<LeaderMessage> {
  return parseWith(leaderMessageSchema, data);
}

/** Serialise a message for the wire (the schemas describe exactly what is sent). */
export function encodeMessage(message: NodeMessage | LeaderMessage): string {
  return JSON.stringify(message);
}

function parseWith<T>(schema: z.ZodType<T>, data: string): ParsedMessage<T> {
  if (data.length > MAX_MESSAGE_BYTES) return { ok: false, reason: `message of ${data.length} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit` };
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    return { ok: false, reason: 'message is not JSON' };
  }
  const result = schema.safeParse(raw);
  if (result.success) return { ok: true, message: result.data };
  const type = raw && typeof raw === 'object' && 'type' in raw ? JSON.stringify((raw as { type: unknown }).type) : 'without a type';
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : '';
  return { ok: false, reason: `message ${type} rejected: ${where ? `${where}: ` : ''}${issue?.message ?? 'invalid'}` };
}
