/**
 * Who may read which researcher pushed which project when (issue 13, finding 10). With no read token
 * configured (leader.yml `api.read_token`, the default, and what a single-user `secd up` wants)
 * everything the API and pages show is public, as before. With one, a reader who does not present it
 * still sees the cluster (nodes, GPUs, utilisation, which run id holds which GPU) and every run's id,
 * state, node, GPUs and times, so queue length and progress stay visible; the run's project, pushing
 * user, commit, reason, results branch and audit-trail reasons read "(hidden)" (or null). Of a run's
 * output release (DESIGN §10) the policy, the counts of approvals and findings, and the outcome stay
 * visible; who reviewed, the merge request, the datasets and each finding's file and detail do not:
 * they say who works on what as plainly as the project's name.
 *
 * The token is presented as `Authorization: Bearer <token>` (scripts, `secd status`) or as the
 * `secd_read` cookie, which a browser gets by opening any page once with `?read_token=<token>`: the
 * leader sets the cookie (HttpOnly, SameSite=Strict) and redirects to the same page without it.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { secretsEqual } from '../scheduler/common/secret-compare.js';
import type { RunReleaseRow } from '../storage/release-store.js';
import type { RunEvent, RunRow } from '../storage/run-store.js';

/** What a hidden field reads. */
export const HIDDEN = '(hidden)';

/** The cookie that carries the read token in a browser. */
export const READ_COOKIE = 'secd_read';

/** The fields of a run that say who pushed what. */
interface Identifying {
  project: string;
  user: string;
  commit: string;
  reason: string;
}

/** The parts of an API release that say who: what hideIdentity hides of it. */
interface ReleaseWho {
  reviewers: string[];
  review_url: string | null;
  decided_by: string | null;
  disclosure?: Array<{ file: string; rule: string; detail: string }>;
}

/**
 * The run with who pushed what replaced by "(hidden)" (and no results branch, when it has one); of
 * its release, when it has one, the reviewers, the merge request and each finding's file and detail.
 */
export function hideIdentity<T extends Identifying>(run: T): T {
  const hidden: T = { ...run, project: HIDDEN, user: HIDDEN, commit: HIDDEN, reason: HIDDEN };
  if ('branch' in hidden) (hidden as { branch: string | null }).branch = null;
  if ('release' in hidden && hidden.release) {
    const r = hidden.release as ReleaseWho;
    const shown: ReleaseWho = { ...r, reviewers: r.reviewers.map(() => HIDDEN), review_url: null, decided_by: r.decided_by === null ? null : HIDDEN };
    if (r.disclosure) shown.disclosure = r.disclosure.map((f) => ({ file: HIDDEN, rule: f.rule, detail: HIDDEN }));
    (hidden as { release: ReleaseWho }).release = shown;
  }
  return hidden;
}

/** A release record as an anonymous reader's run page shows it: policy, counts, rules and outcome. */
export function hideReleaseRow(release: RunReleaseRow): RunReleaseRow {
  return {
    ...release,
    datasets: release.datasets.map(() => HIDDEN),
    findings: release.findings.map((f) => ({ file: HIDDEN, rule: f.rule, detail: HIDDEN })),
    reviewProjectId: null,
    reviewBranch: null,
    reviewCommit: null,
    nodeReason: null,
    mrIid: null,
    mrUrl: null,
    approvals: release.approvals.map((a) => ({ ...a, user: HIDDEN, userId: 0 })),
    decidedBy: release.decidedBy === null ? null : HIDDEN,
  };
}

/** A stored run as an anonymous reader's run page shows it: placement, states and times only. */
export function hideRowIdentity(run: RunRow): RunRow {
  return {
    ...hideIdentity(run),
    projectId: 0,
    ref: HIDDEN,
    beforeSha: HIDDEN,
    userId: null,
    deliveryKey: null,
    fetchUrl: '',
    signer: null,
    config: null,
    warnings: [],
    imageId: null,
    statusPosted: null,
    // What the build printed can name the project and its files as plainly as the reason.
    buildLogTail: null,
  };
}

/** A run's audit trail as an anonymous reader sees it: the states and times, not the reasons. */
export function hideEventReasons(events: readonly RunEvent[]): RunEvent[] {
  return events.map((e) => ({ ...e, reason: HIDDEN }));
}

/** Whether a request may see everything, and what an anonymous one is shown instead. */
export class ReadAccess {
  /** `token` null: every reader sees everything (no read token configured). */
  constructor(private readonly token: string | null) {}

  /** Whether a read token is configured at all. */
  get private(): boolean {
    return this.token !== null;
  }

  /** Whether the request presents the read token (always true when none is configured). */
  allows(headers: IncomingHttpHeaders): boolean {
    if (this.token === null) return true;
    const auth = headers.authorization;
    if (typeof auth === 'string' && /^bearer /i.test(auth) && this.matches(auth.slice(7).trim())) return true;
    const cookie = readCookie(headers.cookie, READ_COOKIE);
    return cookie !== null && this.matches(cookie);
  }

  /** Whether the request carries an `Authorization: Bearer` token that is not the read token. */
  presentsWrongBearer(headers: IncomingHttpHeaders): boolean {
    const auth = headers.authorization;
    if (this.token === null || typeof auth !== 'string' || !/^bearer /i.test(auth)) return false;
    return !this.matches(auth.slice(7).trim());
  }

  /** Whether `candidate` is the read token (in constant time). */
  matches(candidate: string): boolean {
    return this.token !== null && secretsEqual(candidate, this.token);
  }
}

/** The value of cookie `name` in a Cookie header, or null. */
function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return null;
      }
    }
  }
  return null;
}
