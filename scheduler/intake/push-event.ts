/**
 * The GitLab push payload (project "Push Hook" and "System Hook" push events), as far as secd reads
 * it. Unknown fields pass through: GitLab adds fields over time and a new one must not stop runs.
 *
 * Tolerated differences of older payloads (GitLab's own system-hook sample predates them):
 * `object_kind` falls back to `event_name`, `project.id` to the top-level `project_id`, a missing
 * `user_email` is null. `user_username` is required: it names the researcher's cache folder and
 * dataset grants, and guessing it from `user_name` would hand one person's data to another.
 */
import { z } from 'zod';
import { COMMIT_ID_PATTERN } from '../contract/commit-id.js';

/** A commit id: 40 hex digits, or 64 in a SHA-256 repository. */
const sha = z
  .string({ error: (iss) => (iss.input === undefined ? undefined : 'expected a 40-character hex sha') })
  .regex(COMMIT_ID_PATTERN, {
    error: 'expected a 40-character hex sha (64 for SHA-256 repositories)',
  });

const pushKind = z.enum(['push', 'tag_push']);

const commitSchema = z.looseObject({
  id: sha,
  message: z.string(),
  timestamp: z.string(),
  author: z.looseObject({ name: z.string(), email: z.string() }),
});

/** Validates a parsed webhook body; its output fills the fields older payloads lack. */
export const pushEventSchema = z
  .looseObject({
    object_kind: pushKind.optional(),
    event_name: pushKind,
    before: sha,
    after: sha,
    ref: z.string().min(1),
    checkout_sha: sha.nullable(),
    user_id: z.number().int(),
    user_username: z.string().min(1),
    user_name: z.string(),
    user_email: z.string().nullish(),
    project_id: z.number().int(),
    project: z.looseObject({
      id: z.number().int().optional(),
      path_with_namespace: z.string().min(1),
      // null for a project whose repository had no branch yet.
      default_branch: z.string().nullable(),
      git_http_url: z.string().min(1),
      web_url: z.string(),
    }),
    commits: z.array(commitSchema),
    total_commits_count: z.number().int().gte(0),
  })
  .transform((p) => ({
    ...p,
    object_kind: p.object_kind ?? p.event_name,
    user_email: p.user_email ?? null,
    project: { ...p.project, id: p.project.id ?? p.project_id },
  }));

/** A push as secd reads it (unknown extra fields are kept but untyped). */
export type PushEvent = z.output<typeof pushEventSchema>;

/** The all-zero id GitLab uses for "no commit": `before` of a new branch, `after` of a deletion. */
export function isZeroSha(id: string): boolean {
  return /^0+$/.test(id);
}

/** The branch a `refs/heads/...` ref names, or null for tags and other refs. */
export function branchOfRef(ref: string): string | null {
  return ref.startsWith('refs/heads/') && ref.length > 'refs/heads/'.length ? ref.slice('refs/heads/'.length) : null;
}

/** Result of checking a body against the schema: the push, or the first bad field as `body.<path>`. */
export type PushEventParse = { ok: true; push: PushEvent } | { ok: false; field: string; message: string };

/** Checks a parsed JSON body; the message reads like `body.after: expected a 40-character hex sha`. */
export function parsePushEvent(body: unknown): PushEventParse {
  const result = pushEventSchema.safeParse(body, { error: describeIssue });
  if (result.success) return { ok: true, push: result.data };
  const issue = result.error.issues[0]!;
  const field = bodyField(issue.path);
  return { ok: false, field, message: `${field}: ${issue.message}` };
}

/** A zod issue's path as the field of the webhook body it names: `body.commits[1].id`. */
export function bodyField(path: readonly PropertyKey[]): string {
  return path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : `${s}.${String(p)}`), 'body');
}

function withArticle(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

/** Zod's sentences, shortened for a webhook log line (shared by every webhook body schema). */
export function describeIssue(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'required';
      return `expected ${iss.expected === 'int' ? 'an integer' : withArticle(String(iss.expected))}, got ${
        iss.input === null ? 'null' : Array.isArray(iss.input) ? 'an array' : typeof iss.input
      }`;
    case 'invalid_value':
      return `expected one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      if (iss.origin === 'string') return 'must not be empty';
      return iss.inclusive === false ? `must be greater than ${String(iss.minimum)}` : `must be at least ${String(iss.minimum)}`;
    default:
      return undefined;
  }
}
