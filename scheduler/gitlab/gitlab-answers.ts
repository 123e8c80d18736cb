/**
 * GitLab's answers, as secd reads them: one zod schema per answer, the types inferred from them.
 * These answers decide who may run code (the members of a project, their state and access level, the
 * keys that vouch for their commits), so they are checked at the boundary instead of cast: an answer
 * of the wrong shape becomes a value naming the first wrong field, never a member with a missing
 * `state` or a key that is not text. Fields secd does not read are dropped; samples of each answer
 * from GitLab's documentation are in test/fixtures/gitlab/ (see its SOURCES.md).
 */
import { z } from 'zod';
import { dotted } from '../common/describe-value.js';
import { errorText } from '../common/errors.js';

const id = z.number().int().positive();
/** A commit id: 40 hex digits (64 in a SHA-256 repository). */
const commitId = z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'expected a commit id');

/** GET /projects/:id (fields secd reads). */
export const gitlabProjectSchema = z.object({
  id,
  path_with_namespace: z.string().min(1),
  /** null while the project's repository is empty */
  default_branch: z.string().nullable(),
  http_url_to_repo: z.string().min(1),
});

/** One entry of GET /projects/:id/members/all. */
export const gitlabMemberSchema = z.object({
  id,
  username: z.string().min(1),
  name: z.string(),
  /** "active", "blocked", ...: only active members' keys vouch for commits */
  state: z.string().min(1),
  /** 0 no access, 5 minimal, 10 guest, 20 reporter, 30 developer, 40 maintainer, 50 owner */
  access_level: z.number().int().nonnegative(),
});

/** One entry of GET /users/:id/gpg_keys: the armored public key only, no fingerprint. */
export const gitlabGpgKeySchema = z.object({
  id,
  key: z.string(),
  created_at: z.string(),
});

/**
 * One entry of GET /users/:id/keys: an SSH public key line and what GitLab lets it do. Keys added
 * before GitLab 15.7 have no `usage_type`; GitLab's documented default is `auth_and_signing`, so a
 * missing one reads as that. `expires_at` (null: never) is in GitLab's entity though the doc's sample
 * leaves it out, so a missing one reads as null.
 */
export const gitlabSshKeySchema = z.object({
  id,
  key: z.string(),
  usage_type: z.enum(['auth', 'signing', 'auth_and_signing']).default('auth_and_signing'),
  expires_at: z.string().nullable().default(null),
});

/**
 * One entry of GET /users/:id/emails (an administrator's call): a secondary email and when it was
 * confirmed, null while it is not. Only confirmed ones count as the user's own.
 */
export const gitlabEmailSchema = z.object({
  email: z.string().min(1),
  confirmed_at: z.string().nullable(),
});

/**
 * GET /users/:id as an administrator's token sees it (fields secd reads): `email` is the primary
 * email, absent for any other token; `confirmed_at` says the account (and so that email) was
 * confirmed.
 */
export const gitlabUserDetailSchema = z.object({
  id,
  username: z.string().min(1),
  state: z.string().min(1),
  email: z.string().min(1).optional(),
  confirmed_at: z.string().nullable().optional(),
});

/** One entry of GET /users?username= (fields secd reads). */
export const gitlabUserSchema = z.object({
  id,
  username: z.string().min(1),
  name: z.string(),
  state: z.string().min(1),
});

/** GET /projects/:id/repository/branches/:branch (fields secd reads): the branch and its head commit. */
export const gitlabBranchSchema = z.object({
  name: z.string().min(1),
  commit: z.object({ id: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'expected a commit id') }),
});

/**
 * One entry of GET /projects/:id/events?action=pushed (fields secd reads): who pushed what where.
 * `push_data.commit_from` is null for a created branch (its webhook's `before` is forty zeros),
 * `commit_to` null for a deleted one; a push of more refs than GitLab's `push_event_activities_limit`
 * (3 by default) is one "bulk push" event with `ref` and both commits null. `author` is the pusher
 * (the Event entity's `author_username` repeats `author.username`; GitLab's doc sample disagrees with
 * itself there, so the nested user, whose id is `author_id`, is what secd reads).
 */
export const gitlabPushEventSchema = z.object({
  id,
  author_id: id,
  author: z.object({ id, username: z.string().min(1), name: z.string() }),
  /** absent from the doc's sample push event; GitLab's entity always sends it */
  created_at: z.string().optional(),
  push_data: z.object({
    /** "pushed", "created" or "removed" */
    action: z.string().min(1),
    /** "branch" or "tag" */
    ref_type: z.string().min(1),
    commit_from: commitId.nullable(),
    commit_to: commitId.nullable(),
    ref: z.string().nullable(),
  }),
});

/** A user as GitLab names one inside another answer (`closed_by`, `approved_by[].user`). */
const userRef = z.object({ id, username: z.string().min(1) });

/**
 * One merge request (POST/GET/PUT /projects/:id/merge_requests[/:iid], fields secd reads). `sha` is
 * the head of the source branch GitLab last saw; null only while the merge request has no diff.
 */
export const gitlabMergeRequestSchema = z.object({
  id,
  iid: id,
  project_id: id,
  web_url: z.string().min(1),
  title: z.string(),
  state: z.enum(['opened', 'closed', 'merged', 'locked']),
  sha: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'expected a commit id').nullable(),
  source_branch: z.string().min(1),
  target_branch: z.string().min(1),
  closed_by: userRef.nullable(),
});

/**
 * GET /projects/:id/merge_requests/:iid/approvals (fields secd reads): who approved. The
 * `approvals_left`/`approved` fields follow the project's own approval rules, not secd's, and are
 * deliberately not read.
 */
export const gitlabApprovalsSchema = z.object({
  approved_by: z.array(z.object({ user: userRef })),
});

/** GET /projects/:id (fields secd reads). */
export type GitLabProject = z.infer<typeof gitlabProjectSchema>;
/** One entry of GET /projects/:id/members/all. */
export type GitLabMember = z.infer<typeof gitlabMemberSchema>;
/** One entry of GET /users/:id/gpg_keys. */
export type GitLabGpgKey = z.infer<typeof gitlabGpgKeySchema>;
/** One entry of GET /users/:id/keys. */
export type GitLabSshKey = z.infer<typeof gitlabSshKeySchema>;
/** One entry of GET /users/:id/emails. */
export type GitLabEmail = z.infer<typeof gitlabEmailSchema>;
/** GET /users/:id (fields secd reads). */
export type GitLabUserDetail = z.infer<typeof gitlabUserDetailSchema>;
/** One entry of GET /users?username=. */
export type GitLabUser = z.infer<typeof gitlabUserSchema>;

/** One entry of GET /projects/:id/events?action=pushed (fields secd reads). */
export type GitLabPushEvent = z.infer<typeof gitlabPushEventSchema>;

/** One merge request (fields secd reads). */
export type GitLabMergeRequest = z.infer<typeof gitlabMergeRequestSchema>;
/** GET /projects/:id/merge_requests/:iid/approvals (fields secd reads). */
export type GitLabApprovals = z.infer<typeof gitlabApprovalsSchema>;

/** The schemas of the lists GitLab answers, page by page. */
export const gitlabMemberList = z.array(gitlabMemberSchema);
/** GET /users/:id/gpg_keys, one page. */
export const gitlabGpgKeyList = z.array(gitlabGpgKeySchema);
/** GET /users/:id/keys, one page. */
export const gitlabSshKeyList = z.array(gitlabSshKeySchema);
/** GET /users/:id/emails, one page. */
export const gitlabEmailList = z.array(gitlabEmailSchema);
/** GET /users?username=. */
export const gitlabUserList = z.array(gitlabUserSchema);
/** GET /projects/:id/events?action=pushed, one page. */
export const gitlabPushEventList = z.array(gitlabPushEventSchema);
/** GET /projects/:id/merge_requests, one page. */
export const gitlabMergeRequestList = z.array(gitlabMergeRequestSchema);
/** GET /projects/:id/repository/commits/:sha/statuses (fields secd reads): the newest status of each name. */
export const gitlabCommitStatusList = z.array(z.object({ name: z.string(), status: z.string(), target_url: z.string().nullable().default(null) }));

/** An answer read: the value, or the first wrong field (`answer[0].access_level`) and what is wrong with it. */
export type GitLabAnswer<T> = { ok: true; value: T } | { ok: false; field: string; problem: string };

/** Read an answer body (JSON text) against its schema; never throws. */
export function parseGitLabAnswer<T>(schema: z.ZodType<T>, body: string): GitLabAnswer<T> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return { ok: false, field: 'answer', problem: `not JSON (${errorText(err)})` };
  }
  const result = schema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0]!;
  return { ok: false, field: dotted(['answer', ...issue.path.map((p) => (typeof p === 'number' ? p : String(p)))]), problem: issue.message };
}
