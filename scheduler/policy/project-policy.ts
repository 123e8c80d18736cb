/**
 * The researcher's `secd.yml` (DESIGN §5): parsed, checked against the leader's limits and turned
 * into the settings a run is queued with. Pure: the caller reads the file at the pushed commit and
 * supplies the limits and the largest node's GPU count.
 *
 * Choices the design leaves open, made here:
 * - A key written with no value (`cache_dir:`) is an error, not the default: for `datasets` the
 *   default is "all your grants", and a researcher who wrote `datasets:` meaning "none" must not get
 *   every dataset silently. Remove the key for the default; `datasets: []` means none.
 * - `cache_dir` may not contain "." segments either: `cache_dir: .` would mount the researcher's
 *   whole cache root, which is never what "a cache folder" means.
 * - `mount_path` segments use the same characters as `cache_dir` (letters, digits, ".", "_", "-"):
 *   the path ends up in docker mount specs, where ":" and "," are separators.
 * - Each dataset name is checked against the user's grants elsewhere (it needs the database).
 * - The file is researcher input parsed on the leader's event loop, so it is bounded before it is
 *   parsed (SECD_YML_BOUNDS: 64 KiB, 4,096 YAML tokens — a few hundred keys —, 32 levels deep); a
 *   file over a bound is rejected with a reason naming the size and the limit (issue 13).
 */
import path from 'node:path';
import { z } from 'zod';
import { show } from '../common/describe-value.js';
import { parseYamlWith, type YamlBounds } from '../common/yaml-schema.js';
import { gpuShortfall } from '../plan/gpu-eligibility.js';
import type { PlannedNode } from '../plan/plan-types.js';
import { readGpuAsk } from './gpu-request-field.js';

/** What the leader allows, and the largest GPU count any node has right now. */
export interface PolicyLimits {
  maxRunforHours: number;
  maxGpusPerRun: number;
  largestNodeGpus: number;
  /**
   * The nodes' GPUs as the planner sees them: when given, a `gpu:` request for a model, memory or
   * MIG profile that no node can ever meet is rejected here, naming what is missing (otherwise the
   * planner rejects it at its first round, with the same sentence).
   */
  gpuNodes?: ReadonlyArray<Pick<PlannedNode, 'id' | 'gpus' | 'gpuDetails'>>;
}

/** Outcome of reading secd.yml: the run's settings, or one line naming the offending key. */
export type RunConfigResult =
  | { ok: true; config: RunConfig; warnings: string[] }
  | { ok: false; key: string; reason: string };

/** The keys secd.yml knows; anything else is a warning. */
const KNOWN_KEYS = ['runfor', 'gpu', 'cache_dir', 'mount_path', 'datasets'] as const;

/** What a secd.yml may be: a handful of settings fit in far less, and nothing under these takes long to parse. */
export const SECD_YML_BOUNDS: YamlBounds = { maxBytes: 64 * 1024, maxTokens: 4096, maxDepth: 32 };

const DEFAULT_RUNFOR_HOURS = 3;
const DEFAULT_MOUNT_PATH = '/cache';

/** Letters, digits, dot, underscore, dash: safe in file names and docker mount specs alike. */
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * Container paths the cache may not cover, sit inside, or contain, and why. The cache is writable
 * and outlives the run, so over the image's system folders it would let one run change what the
 * next (differently signed) commit executes; kernel folders belong to the runtime; /outputs is
 * what secd pushes back; /run/mysqld is where the node mounts the dataset socket (DB_SOCKET);
 * /datasets/<name> is where file datasets appear, read-only.
 */
const RESERVED_PATHS: ReadonlyArray<readonly [string, string]> = [
  ['/outputs', "where the run's results are collected"],
  ['/proc', 'a kernel interface the container runtime provides'],
  ['/sys', 'a kernel interface the container runtime provides'],
  ['/dev', 'a kernel interface the container runtime provides'],
  ['/etc', "the image's system configuration"],
  ['/usr', "the image's programs and libraries"],
  ['/bin', "the image's programs"],
  ['/sbin', "the image's programs"],
  ['/lib', "the image's libraries"],
  ['/lib32', "the image's libraries"],
  ['/lib64', "the image's libraries"],
  ['/libx32', "the image's libraries"],
  ['/boot', "the image's boot files"],
  ['/run/mysqld', 'reserved for the dataset socket'],
  ['/datasets', 'where file datasets are mounted'],
];

function cacheDirProblem(dir: string): string | null {
  if (dir.length === 0) return 'must not be empty';
  if (dir.startsWith('/')) return `must be a relative folder name, not an absolute path (got ${show(dir)})`;
  const segments = dir.split('/');
  if (segments.includes('..')) return `must not contain ".." (got ${show(dir)})`;
  if (segments.includes('.')) return `must not contain "." segments (got ${show(dir)})`;
  if (segments.includes('')) return `must not contain empty segments (got ${show(dir)})`;
  if (!segments.every((s) => SEGMENT.test(s))) {
    return `may use only letters, digits, ".", "_" and "-" between slashes (got ${show(dir)})`;
  }
  if (segments.some((s) => s.length > 255)) return 'has a segment longer than 255 characters';
  return null;
}

function mountPathProblem(p: string): string | null {
  if (!p.startsWith('/')) return `must be an absolute path (got ${show(p)})`;
  if (p === '/') return 'must not be "/"';
  const normal = path.posix.normalize(p).replace(/\/+$/, '') || '/';
  if (normal !== p) return `must be a normalized path (got ${show(p)}; did you mean ${show(normal)}?)`;
  if (!p.slice(1).split('/').every((s) => SEGMENT.test(s))) {
    return `may use only letters, digits, ".", "_" and "-" between slashes (got ${show(p)})`;
  }
  if (p.length > 1024) return 'is longer than 1024 characters';
  for (const [reserved, why] of RESERVED_PATHS) {
    if (p === reserved || p.startsWith(`${reserved}/`)) {
      return `must not be ${reserved} or inside it: that is ${why} (got ${show(p)})`;
    }
    if (reserved.startsWith(`${p}/`)) {
      return `must not contain ${reserved}: that is ${why} (got ${show(p)})`;
    }
  }
  return null;
}

/** The schema of secd.yml for given limits; its output is the run's settings. */
function secdYmlSchema(limits: PolicyLimits) {
  return z
    .looseObject({
      runfor: z
        .number({ error: unlessNull((iss) => `must be a number of hours (got ${show(iss.input)})`) })
        .gt(0, { error: (iss) => `must be greater than 0 (got ${show(iss.input)})` })
        .lte(limits.maxRunforHours, {
          error: (iss) => `must be at most ${limits.maxRunforHours} hours, the leader's limit (got ${show(iss.input)})`,
        })
        .default(DEFAULT_RUNFOR_HOURS),
      gpu: z
        .union([z.boolean(), z.number(), z.record(z.string(), z.unknown())], {
          error: unlessNull((iss) => `must be true, false or a number of GPUs (got ${show(iss.input)})`),
        })
        .default(false)
        .transform((gpu, zctx) => {
          const fail = (message: string, path: string[] = []) => {
            zctx.issues.push({ code: 'custom', input: gpu, message, path });
            return z.NEVER;
          };
          const read = readGpuAsk(gpu);
          if (!read.ok) return fail(read.message, read.path);
          const n = read.ask.count;
          if (n > limits.maxGpusPerRun) {
            return fail(`asks for ${gpus(n)}, more than the leader's limit of ${limits.maxGpusPerRun}`);
          }
          if (read.ask.request && limits.gpuNodes && limits.gpuNodes.length > 0) {
            const shortfall = gpuShortfall(limits.gpuNodes, n, read.ask.request);
            if (shortfall) return fail(`cannot be met: ${shortfall}`);
          } else if (n > limits.largestNodeGpus) {
            return fail(`asks for ${gpus(n)}, but no node has ${gpus(n)} (the largest has ${limits.largestNodeGpus})`);
          }
          return read.ask;
        }),
      cache_dir: z
        .string({ error: unlessNull((iss) => `must be a folder name like "models" (got ${show(iss.input)})`) })
        .superRefine((dir, zctx) => {
          const problem = cacheDirProblem(dir);
          if (problem) zctx.issues.push({ code: 'custom', input: dir, message: problem });
        })
        .optional(),
      mount_path: z
        .string({ error: unlessNull((iss) => `must be an absolute path like "/cache" (got ${show(iss.input)})`) })
        .superRefine((p, zctx) => {
          const problem = mountPathProblem(p);
          if (problem) zctx.issues.push({ code: 'custom', input: p, message: problem });
        })
        .default(DEFAULT_MOUNT_PATH),
      datasets: z
        .array(
          z
            .string({ error: (iss) => `must be a dataset name (got ${show(iss.input)})` })
            .refine((name) => name.trim().length > 0, { error: 'must be a dataset name, not empty' }),
          { error: unlessNull((iss) => `must be a list of dataset names (got ${show(iss.input)})`) },
        )
        .superRefine((names, zctx) => {
          const seen = new Set<string>();
          for (const name of names) {
            if (seen.has(name)) {
              zctx.issues.push({ code: 'custom', input: names, message: `lists ${show(name)} twice` });
              return;
            }
            seen.add(name);
          }
        })
        .optional(),
    })
    .transform((y) => ({
      runforHours: y.runfor,
      // Rounded to whole milliseconds, but never to zero: runfor > 0 must stop a run, not skip it.
      runforMs: Math.max(1, Math.round(y.runfor * 3_600_000)),
      gpus: y.gpu.count,
      // Only a request that asks something beyond a count is kept: plain `gpu: 2` stays as it was.
      ...(y.gpu.request ? { gpuRequest: y.gpu.request } : {}),
      cacheDir: y.cache_dir ?? null,
      mountPath: y.mount_path,
      datasets: y.datasets ?? null,
    }));
}

/** A run's settings from secd.yml. `gpus`: true → 1, false → 0; `datasets` null = all the user's grants. */
export type RunConfig = z.output<ReturnType<typeof secdYmlSchema>>;

/** Reads secd.yml (null when the commit has none) against the leader's limits. */
export function resolveRunConfig(yamlText: string | null, limits: PolicyLimits): RunConfigResult {
  const result = parseYamlWith(yamlText ?? '', secdYmlSchema(limits), {
    example: 'runfor: 3',
    error: nullOrMissing,
    bounds: SECD_YML_BOUNDS,
  });
  if (!result.ok) {
    // The commit status has room for one line: the first problem, named by its top-level key.
    const problem = result.problems[0]!;
    const top = problem.path[0];
    return fail(typeof top === 'string' ? top : 'secd.yml', `secd.yml: ${problem.sentence}`);
  }
  const warnings = Object.keys(result.raw)
    .filter((k) => !(KNOWN_KEYS as readonly string[]).includes(k))
    .map((k) => {
      const guess = closestKnownKey(k);
      return `secd.yml: unknown key ${show(k)} ignored${guess ? ` (did you mean ${show(guess)}?)` : ''}`;
    });
  return { ok: true, config: result.data, warnings };
}

function fail(key: string, reason: string): RunConfigResult {
  return { ok: false, key, reason };
}

/** Lets a null value fall through to nullOrMissing, whose sentence says how to fix it. */
function unlessNull(message: (iss: z.core.$ZodRawIssue) => string) {
  return (iss: z.core.$ZodRawIssue): string | undefined => (iss.input === null ? undefined : message(iss));
}

/** Covers what the per-field messages cannot: a key written with nothing after the colon. */
function nullOrMissing(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.input === null) return 'has no value; remove the key to take the default';
  return undefined;
}

/** A near miss ("gpus", "runFor", "dataset") is worth pointing out: the run would silently differ. */
function closestKnownKey(key: string): string | null {
  const lower = key.toLowerCase();
  let best: string | null = null;
  let bestDistance = 3;
  for (const known of KNOWN_KEYS) {
    const d = editDistance(lower, known);
    if (d < bestDistance) {
      best = known;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function gpus(n: number): string {
  return `${n} GPU${n === 1 ? '' : 's'}`;
}
