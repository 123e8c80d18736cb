/**
 * The leader's JSON API (DESIGN §8), declared once: each shape is a zod schema, its type is inferred
 * from it, and the mapper that builds it from the leader's own records sits beside it. The server
 * (leader-server.ts), /metrics (metrics.ts), the status page's feed (status-feed.ts), `secd status`
 * (which parses the leader's answers with these schemas: for it they are a boundary) and the tests
 * all take the shapes from here, so they cannot drift apart.
 *
 * Field names are snake_case, times ISO-8601 UTC strings, and a value the hardware reports as N/A is
 * `null`, never 0. Keys are built in the order clients have always seen them.
 */
import { z } from 'zod';
import { redactCredentials } from '../scheduler/common/redact.js';
import type { NodeView } from '../scheduler/cluster/node-view.js';
import type { RunReleaseRow } from '../storage/release-store.js';
import { RUN_STATES } from '../storage/run-states.js';
import type { RunEvent, RunRow } from '../storage/run-store.js';

/** A measurement the hardware may report as N/A: null, never 0. */
const reading = z.number().nullable();
const runState = z.enum(RUN_STATES);

/** One MIG device of a MIG-mode GPU, with the run that holds it or null. */
export const apiMigDeviceSchema = z.object({
  uuid: z.string(),
  index: z.number(),
  profile: z.string(),
  memory_total_bytes: reading,
  run_id: z.string().nullable(),
});

/**
 * One GPU of a node, with the run that holds it (from SQLite) or null. The fields after `run_id`
 * are absent in the answers of a leader from before MIG and GPU health were reported.
 */
export const apiGpuSchema = z.object({
  uuid: z.string(),
  index: z.number(),
  name: z.string(),
  memory_total_bytes: reading,
  memory_used_bytes: reading,
  utilization_pct: reading,
  temperature_c: reading,
  power_w: reading,
  run_id: z.string().nullable(),
  /** `ok`, `busy_foreign` (processes that are not secd's), `lost` or `error`: only `ok` GPUs are given out. */
  health: z.enum(['ok', 'busy_foreign', 'lost', 'error']).optional(),
  /** What nvidia-smi said of a lost GPU or one in error, else null. */
  problem: z.string().nullable().optional(),
  /** MIG on (its devices are what runs get), off, or null: the node cannot say. */
  mig_mode: z.boolean().nullable().optional(),
  mig_devices: z.array(apiMigDeviceSchema).optional(),
});

/** A node as GET /api/v1/nodes lists it. */
export const apiNodeSchema = z.object({
  id: z.string(),
  hostname: z.string(),
  state: z.enum(['up', 'down', 'draining']),
  last_seen: z.string().nullable(),
  cpus: z.number(),
  memory_bytes: z.number(),
  load: reading,
  /** Free host memory from the last status, or null before one (absent: an older leader). */
  memory_free_bytes: reading.optional(),
  /** Set while the node's nvidia-smi fails: its GPUs are the last inventory read, since then. */
  gpus_stale: z.object({ since: z.string(), reason: z.string() }).nullable().optional(),
  /** Present while the node's disk is under its watermark (its own sentence): it gets no new run meanwhile. */
  disk_low: z.string().optional(),
  /** Runs in flight on the node. */
  runs: z.array(z.string()),
  gpus: z.array(apiGpuSchema),
});

/**
 * How a run's outputs leave the cluster (DESIGN §10): its policy, the approvals it needs and has, who
 * gave them, the review's merge request, how many disclosure findings the checks made, and the
 * outcome once a checker decided. Counts, not files: the list is on GET /api/v1/runs/:id only.
 */
export const apiReleaseSchema = z.object({
  policy: z.enum(['direct', 'review']),
  approvals_required: z.number(),
  /** Distinct approvals secd counted (members with access ≥ Developer, not the researcher, not secd). */
  approvals: z.number(),
  /** The usernames of those approvals, in the order they were counted. */
  reviewers: z.array(z.string()),
  /** The review project's merge request, or null (a `direct` run, or not opened yet). */
  review_url: z.string().nullable(),
  /** How many disclosure findings the automated checks made. */
  findings: z.number(),
  outcome: z.enum(['released', 'withheld']).nullable(),
  /** The reviewers who released it (comma-separated) or the checker who withheld it. */
  decided_by: z.string().nullable(),
  decided_at: z.string().nullable(),
});

/** One automated disclosure finding: the file, the rule and a short detail (never a cell's value). */
export const apiFindingSchema = z.object({ file: z.string(), rule: z.string(), detail: z.string() });

/** The release as GET /api/v1/runs/:id shows it: the summary plus every finding. */
export const apiReleaseDetailSchema = apiReleaseSchema.extend({ disclosure: z.array(apiFindingSchema) });

/** A run as GET /api/v1/runs lists it. */
export const apiRunSchema = z.object({
  id: z.string(),
  project: z.string(),
  commit: z.string(),
  user: z.string(),
  state: runState,
  reason: z.string(),
  node: z.string().nullable(),
  /** GPU UUIDs. */
  gpus: z.array(z.string()),
  created_at: z.string(),
  started_at: z.string().nullable(),
  finished_at: z.string().nullable(),
  branch: z.string().nullable(),
  /** null: the run never reached a node (no policy was decided), or the leader predates output release. */
  release: apiReleaseSchema.nullable().default(null),
});

/** One entry of a run's audit trail. */
export const apiEventSchema = z.object({
  at: z.string(),
  from: runState.nullable(),
  to: runState,
  reason: z.string(),
});

/** One run as GET /api/v1/runs/:id shows it: the run with its findings, plus its audit trail. */
export const apiRunDetailSchema = apiRunSchema.extend({
  release: apiReleaseDetailSchema.nullable().default(null),
  events: z.array(apiEventSchema),
});

/** A held run's progress as the status page shows it: how many approvals, never files, findings or reviewers. */
export const statusReviewSchema = z.object({ approvals: z.number(), approvals_required: z.number() });

/**
 * A run as the status page shows it: no results branch, the commit shortened to 12 characters, and
 * of its release only a held run's approval count (`review`, null for every other run).
 */
export const statusRunSchema = apiRunSchema.omit({ branch: true, release: true }).extend({ review: statusReviewSchema.nullable() });

/** The answer of GET /api/v1/nodes. */
export const apiNodesAnswerSchema = z.object({ nodes: z.array(apiNodeSchema) });

/** The answer of GET /api/v1/runs. */
export const apiRunsAnswerSchema = z.object({ runs: z.array(apiRunSchema) });

/** One GPU of an API node. */
export type ApiGpu = z.infer<typeof apiGpuSchema>;
/** A node of the API. */
export type ApiNode = z.infer<typeof apiNodeSchema>;
/** A run of the API. */
export type ApiRun = z.infer<typeof apiRunSchema>;
/** A run's release in the API. */
export type ApiRelease = z.infer<typeof apiReleaseSchema>;
/** A run's release with its findings. */
export type ApiReleaseDetail = z.infer<typeof apiReleaseDetailSchema>;
/** A held run's approvals on the status page. */
export type StatusReview = z.infer<typeof statusReviewSchema>;
/** An audit entry of the API. */
export type ApiEvent = z.infer<typeof apiEventSchema>;
/** A run with its audit trail. */
export type ApiRunDetail = z.infer<typeof apiRunDetailSchema>;
/** A run of the status page. */
export type StatusRun = z.infer<typeof statusRunSchema>;

/** The API's release summary of a run. */
export function toApiRelease(r: RunReleaseRow): ApiRelease {
  return {
    policy: r.policy,
    approvals_required: r.approvalsRequired,
    approvals: r.approvals.length,
    reviewers: r.approvals.map((a) => a.user),
    review_url: r.mrUrl,
    findings: r.findings.length,
    outcome: r.outcome,
    decided_by: r.decidedBy,
    decided_at: r.decidedAt,
  };
}

/** The API's run: reasons lose any credentials a URL in them carried; `release` from the release store. */
export function toApiRun(run: RunRow, release: RunReleaseRow | null = null): ApiRun {
  return {
    id: run.id,
    project: run.project,
    commit: run.commit,
    user: run.user,
    state: run.state,
    reason: redactCredentials(run.reason),
    node: run.node,
    gpus: run.gpus,
    created_at: run.createdAt,
    started_at: run.startedAt,
    finished_at: run.finishedAt,
    branch: run.branch,
    release: release ? toApiRelease(release) : null,
  };
}

/** The API's one run: the run, its release with every finding, and its audit trail. */
export function toApiRunDetail(run: RunRow, release: RunReleaseRow | null, events: readonly RunEvent[]): ApiRunDetail {
  return {
    ...toApiRun(run),
    release: release ? { ...toApiRelease(release), disclosure: release.findings.map((f) => ({ file: f.file, rule: f.rule, detail: f.detail })) } : null,
    events: events.map(toApiEvent),
  };
}

/** The API's audit entry. */
export function toApiEvent(e: RunEvent): ApiEvent {
  return { at: e.at, from: e.from, to: e.to, reason: redactCredentials(e.reason) };
}

/**
 * The status page's run: no outputs, logs, URLs or credentials; a held run (with its release record)
 * carries its approval count, and nothing else of its review.
 */
export function toStatusRun(run: RunRow, release: RunReleaseRow | null = null): StatusRun {
  const { branch: _branch, release: _release, ...shown } = toApiRun(run);
  const review = run.state === 'held' && release ? { approvals: release.approvals.length, approvals_required: release.approvalsRequired } : null;
  return { ...shown, commit: run.commit.slice(0, 12), review };
}

/**
 * The API's node, built from what the node said (DESIGN §7: its hello's GPUs, its last status's
 * samples and host figures) for networked and in-process nodes alike; its runs and which run holds
 * each GPU come from SQLite (`runs`: those in flight on it). A GPU the last status did not mention
 * shows null readings, never 0.
 */
export function toApiNode(v: NodeView, runs: readonly RunRow[]): ApiNode {
  const holder = new Map<string, string>();
  for (const r of runs) for (const g of r.gpus) holder.set(g, r.id);
  const samples = v.status?.gpus ?? [];
  const host = v.status?.host ?? null;
  return {
    id: v.id,
    hostname: v.hello?.hostname ?? v.id,
    state: v.state,
    last_seen: v.lastSeen,
    cpus: host?.cpus ?? v.hello?.inventory.cpus ?? 0,
    memory_bytes: host?.memory_total_bytes ?? v.hello?.inventory.memory_bytes ?? 0,
    load: host?.load ?? null,
    memory_free_bytes: host?.memory_free_bytes ?? null,
    gpus_stale: v.status?.gpus_stale ?? null,
    ...(v.status?.disk_low ? { disk_low: v.status.disk_low } : {}),
    runs: runs.map((r) => r.id),
    gpus: (v.hello?.inventory.gpus ?? []).map((g, i) => {
      // Samples come in inventory order; look further only when a node reports otherwise.
      const s = samples[i]?.uuid === g.uuid ? samples[i] : samples.find((x) => x.uuid === g.uuid);
      return {
        uuid: g.uuid,
        index: g.index,
        name: g.name,
        memory_total_bytes: s?.memory_total_bytes ?? g.memory_total_bytes,
        memory_used_bytes: s?.memory_used_bytes ?? null,
        utilization_pct: s?.utilization_pct ?? null,
        temperature_c: s?.temperature_c ?? null,
        power_w: s?.power_w ?? null,
        run_id: holder.get(g.uuid) ?? null,
        // An older node sends no health: its foreign-busy flag says as much as it knows.
        health: s ? (s.health ?? (s.foreign_busy ? 'busy_foreign' : 'ok')) : 'ok',
        problem: s?.problem ?? null,
        mig_mode: g.mig_mode ?? null,
        mig_devices: (g.mig_mode ? (g.mig_devices ?? []) : []).map((d) => ({ ...d, run_id: holder.get(d.uuid) ?? null })),
      };
    }),
  };
}
