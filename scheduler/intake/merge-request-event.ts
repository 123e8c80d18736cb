/**
 * The GitLab merge-request payload (project "Merge Request Hook", and a "System Hook" whose body has
 * `object_kind: merge_request`), as far as secd reads it: which merge request of which project, and
 * the action the sender names. Nothing else is read, and even this is not believed: the hook carries
 * no proof of who approved (anyone who knows the token can send one), so the leader treats it as
 * "something happened to merge request `iid` of project `id`" and re-reads approvals and members from
 * the API (DESIGN §10). Unknown fields pass through; shape from
 * test/fixtures/gitlab/merge_request_event_webhook.json.
 */
import { z } from 'zod';
import { bodyField, describeIssue } from './push-event.js';

const id = z.number().int().positive();

/** Validates a parsed merge-request webhook body. */
export const mergeRequestEventSchema = z.looseObject({
  object_kind: z.literal('merge_request'),
  project: z.looseObject({ id }),
  object_attributes: z.looseObject({
    iid: id,
    /** open, close, reopen, update, approval, approved, unapproval, unapproved, merge; absent on some older events */
    action: z.string().nullish(),
  }),
});

/** A merge-request event as secd reads it. */
export interface MergeRequestEvent {
  projectId: number;
  iid: number;
  /** what the sender says happened, for the log only; null when the event names no action */
  action: string | null;
}

/** Result of checking a body: the event, or the first bad field as `body.<path>`. */
export type MergeRequestEventParse = { ok: true; event: MergeRequestEvent } | { ok: false; field: string; message: string };

/** Checks a parsed JSON body; the message reads like `body.object_attributes.iid: required`. */
export function parseMergeRequestEvent(body: unknown): MergeRequestEventParse {
  const result = mergeRequestEventSchema.safeParse(body, { error: describeIssue });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = bodyField(issue.path);
    return { ok: false, field, message: `${field}: ${issue.message}` };
  }
  const b = result.data;
  return { ok: true, event: { projectId: b.project.id, iid: b.object_attributes.iid, action: b.object_attributes.action ?? null } };
}
