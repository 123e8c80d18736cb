/**
 * Counting a review's approvals (DESIGN §10). GitLab's own `approved`/`approvals_left` follow the
 * review project's rules, not secd's, and a hook proves nothing: secd reads who approved and who the
 * members are, and counts distinct approvers who are active members with Developer access or more,
 * are not the run's researcher (an author never reviews their own outputs) and are not secd's own
 * user. Every approver is listed with why it did or did not count, for the audit.
 */

/** Developer: the least access a checker needs. */
export const CHECKER_ACCESS_LEVEL = 30;

/** A user as the approvals answer lists them. */
export interface Approver {
  id: number;
  username: string;
}

/** A review project member as the members answer lists them. */
export interface ReviewMember {
  id: number;
  username: string;
  state: string;
  access_level: number;
}

/** Whose approvals never count. */
export interface RunAuthor {
  /** The researcher's GitLab username and id (id null: an old run without one). */
  username: string;
  userId: number | null;
  /** secd's own GitLab user. */
  botUserId: number | null;
}

/** Each approver, counted or not and why. */
export interface ApprovalVerdict {
  id: number;
  username: string;
  counted: boolean;
  /** Why it does not count (absent when it does). */
  why?: string;
}

/** Judge every approver once (GitLab lists each user once, but a repeated entry still counts once). */
export function judgeApprovals(approvers: readonly Approver[], members: readonly ReviewMember[], author: RunAuthor): ApprovalVerdict[] {
  const byId = new Map(members.map((m) => [m.id, m]));
  const seen = new Set<number>();
  const verdicts: ApprovalVerdict[] = [];
  for (const a of approvers) {
    if (seen.has(a.id)) continue;
    seen.add(a.id);
    const member = byId.get(a.id);
    const verdict = (why?: string): ApprovalVerdict => ({ id: a.id, username: a.username, counted: why === undefined, ...(why ? { why } : {}) });
    if (author.botUserId !== null && a.id === author.botUserId) verdicts.push(verdict("secd's own user"));
    else if (a.id === author.userId || a.username.toLowerCase() === author.username.toLowerCase()) verdicts.push(verdict("the run's researcher (authors never review their own outputs)"));
    else if (!member) verdicts.push(verdict('not a member of the review project'));
    else if (member.state !== 'active') verdicts.push(verdict(`a ${member.state} member of the review project`));
    else if (member.access_level < CHECKER_ACCESS_LEVEL) verdicts.push(verdict(`access level ${member.access_level} in the review project (Developer, 30, or more needed)`));
    else verdicts.push(verdict());
  }
  return verdicts;
}
