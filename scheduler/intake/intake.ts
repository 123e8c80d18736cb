/**
 * Webhook intake: decides what one POST /v1/hook delivery means, without a web framework, so the
 * HTTP route only maps the decision to a response. No I/O, no clock: the route answers GitLab within
 * milliseconds and verification happens afterwards.
 *
 * Decisions made here:
 * - The token is checked before anything else is read, so an unauthenticated caller learns nothing
 *   about what secd would do with its body.
 * - Tag pushes and non-push events are ignored before the body is checked against the push schema:
 *   secd reads nothing from them, and a 400 for a payload it does not use would count towards GitLab
 *   disabling the hook.
 * - GitLab's own "System Hook" push sample is an older, smaller payload without `user_username`; it
 *   is answered 400 naming that field (see push-event.ts for why it cannot be guessed). Current
 *   GitLab sends system-hook pushes in the full project-hook shape, which is accepted.
 * - A "Merge Request Hook" (or a system hook with `object_kind: merge_request`) is output review's
 *   nudge (DESIGN §10): only the project id and the merge request's iid are taken from it, checked
 *   like a push's fields; whoever routes the decision re-reads the merge request from GitLab, since a
 *   hook proves nothing about who approved. Which project is the review project is not known here.
 */
import { createHash } from 'node:crypto';
import { errorText } from '../common/errors.js';
import { secretsEqual } from '../common/secret-compare.js';
import { parseMergeRequestEvent } from './merge-request-event.js';
import { branchOfRef, isZeroSha, parsePushEvent, type PushEvent } from './push-event.js';

/** One delivery as the HTTP layer received it; header names in any case. */
export interface Delivery {
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer | string;
}

/** What intake needs from the leader's config. */
export interface IntakeConfig {
  /** The hook's secret token; must not be empty. */
  webhookSecret: string;
  /** 'default' (the project's default branch) or a branch name. */
  runBranch: string;
  /**
   * The output review project (`release.review_project`, a path): pushes to it never start a run.
   * Its branches are secd's review branches and the code of the runs they came from.
   */
  reviewProject?: string;
}

/** Why a delivery was answered 200 without starting a run. */
export type IgnoredCode =
  | 'not_push'
  | 'tag_push'
  | 'not_a_branch'
  | 'branch_deleted'
  | 'results_branch'
  | 'no_default_branch'
  | 'not_run_branch'
  | 'review_project';

/** What to do with a delivery: the HTTP status plus a stable code and a sentence for people. */
export type Decision =
  | { kind: 'unauthorized'; status: 401; code: 'missing_token' | 'wrong_token'; message: string }
  | { kind: 'malformed'; status: 400; code: 'invalid_json' | 'invalid_payload'; message: string }
  | { kind: 'ignored'; status: 200; code: IgnoredCode; reason: string; deliveryKey: string }
  | { kind: 'accepted'; status: 200; push: PushEvent; branch: string; deliveryKey: string }
  /** Something happened to merge request `iid` of project `projectId`; `action` is the sender's word, for logs only. */
  | { kind: 'merge_request'; status: 200; projectId: number; iid: number; action: string | null; deliveryKey: string };

/** Events that may carry a push; anything else is acknowledged and ignored. */
const PUSH_HOOK = 'Push Hook';
const TAG_PUSH_HOOK = 'Tag Push Hook';
const SYSTEM_HOOK = 'System Hook';
const MERGE_REQUEST_HOOK = 'Merge Request Hook';

/** Prefix of secd's results branches (DESIGN §5): pushing them must never start a run. */
export const RESULTS_BRANCH_PREFIX = 'secd-';

/** Classifies one webhook delivery; pure apart from hashing. */
export function classifyDelivery(req: Delivery, cfg: IntakeConfig): Decision {
  if (cfg.webhookSecret.length === 0) {
    // Config loading refuses an empty secret; reaching here is a wiring bug, and accepting every
    // caller would be the worst way to find it.
    throw new Error('classifyDelivery: webhookSecret is empty');
  }
  const token = header(req.headers, 'x-gitlab-token');
  if (token === undefined) {
    return { kind: 'unauthorized', status: 401, code: 'missing_token', message: 'missing X-Gitlab-Token header' };
  }
  if (!secretsEqual(token, cfg.webhookSecret)) {
    return { kind: 'unauthorized', status: 401, code: 'wrong_token', message: 'X-Gitlab-Token does not match the webhook secret' };
  }

  const deliveryKey = deliveryKeyOf(req);
  const ignored = (code: IgnoredCode, reason: string): Decision => ({ kind: 'ignored', status: 200, code, reason, deliveryKey });

  const event = header(req.headers, 'x-gitlab-event');
  if (event !== PUSH_HOOK && event !== TAG_PUSH_HOOK && event !== SYSTEM_HOOK && event !== MERGE_REQUEST_HOOK) {
    return ignored('not_push', 'not a push event');
  }
  if (event === TAG_PUSH_HOOK) return ignored('tag_push', 'tag push');

  const text = typeof req.rawBody === 'string' ? req.rawBody : req.rawBody.toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return {
      kind: 'malformed',
      status: 400,
      code: 'invalid_json',
      message: `body is not valid JSON: ${errorText(err)}`,
    };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { kind: 'malformed', status: 400, code: 'invalid_payload', message: 'body: expected a JSON object' };
  }

  if (event === MERGE_REQUEST_HOOK || (event === SYSTEM_HOOK && (body as Record<string, unknown>).object_kind === 'merge_request')) {
    const parsed = parseMergeRequestEvent(body);
    if (!parsed.ok) return { kind: 'malformed', status: 400, code: 'invalid_payload', message: parsed.message };
    return { kind: 'merge_request', status: 200, ...parsed.event, deliveryKey };
  }

  // System hooks carry every kind of instance event; the body says which. Project hooks carry it too.
  const eventName = (body as Record<string, unknown>).event_name;
  if (event === SYSTEM_HOOK && eventName !== 'push' && eventName !== 'tag_push') {
    return ignored('not_push', 'not a push event');
  }
  const ref = (body as Record<string, unknown>).ref;
  if (eventName === 'tag_push' || (typeof ref === 'string' && ref.startsWith('refs/tags/'))) {
    return ignored('tag_push', 'tag push');
  }

  const parsed = parsePushEvent(body);
  if (!parsed.ok) return { kind: 'malformed', status: 400, code: 'invalid_payload', message: parsed.message };
  const push = parsed.push;

  const branch = branchOfRef(push.ref);
  if (branch === null) return ignored('not_a_branch', `not a branch (${JSON.stringify(push.ref)})`);
  if (isZeroSha(push.after)) return ignored('branch_deleted', 'branch deleted');
  // Checked before the run branch so that even a run_branch of secd-* could not loop results into runs.
  if (branch.startsWith(RESULTS_BRANCH_PREFIX)) return ignored('results_branch', 'secd results branch');

  if (cfg.reviewProject !== undefined && push.project.path_with_namespace.toLowerCase() === cfg.reviewProject.toLowerCase()) {
    return ignored('review_project', `the output review project (${cfg.reviewProject}) never starts runs`);
  }
  const runBranch = cfg.runBranch === 'default' ? push.project.default_branch : cfg.runBranch;
  if (runBranch === null) {
    return ignored('no_default_branch', `the project has no default branch yet (${JSON.stringify(push.ref)})`);
  }
  if (branch !== runBranch) {
    return ignored('not_run_branch', `not the run branch (${JSON.stringify(push.ref)}; runs start from ${JSON.stringify(runBranch)})`);
  }
  return { kind: 'accepted', status: 200, push, branch, deliveryKey };
}

/**
 * Dedupe key of a delivery: GitLab keeps `Idempotency-Key` across retries of one delivery; older
 * GitLab only sends `X-Gitlab-Event-UUID`; without either, identical bodies are the same delivery.
 */
export function deliveryKeyOf(req: Delivery): string {
  for (const name of ['idempotency-key', 'x-gitlab-event-uuid']) {
    const value = header(req.headers, name)?.trim();
    if (value) return value.length <= 200 ? value : `sha256:${sha256(value).toString('hex')}`;
  }
  return `sha256:${sha256(req.rawBody).toString('hex')}`;
}

function sha256(data: string | Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * A header by name in any case. A header sent twice (an array) counts as absent: for the token,
 * two values are not "the" secret, and for the others guessing which one GitLab meant is no better.
 */
function header(headers: Delivery['headers'], name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    if (Array.isArray(value)) return value.length === 1 ? value[0] : undefined;
    return value;
  }
  return undefined;
}
