/**
 * Which release policy a run gets (DESIGN §10): the strictest of the datasets it was given and the
 * largest number of approvals any of them asks for; a run given no dataset follows `release.default`.
 * A dataset whose `approvals` is null asks for the config's `release.approvals`.
 */
import { stricterPolicy, type ReleasePolicy } from '../contract/disclosure.js';

/** A dataset's say in the policy, as the dataset store keeps it. */
export interface DatasetRelease {
  name: string;
  release: ReleasePolicy;
  approvals: number | null;
}

/** The release part of the leader's config that decides policies. */
export interface ReleaseDefaults {
  /** Policy of a run given no dataset. */
  default: ReleasePolicy;
  /** Approvals a `review` dataset asks for when it names none. */
  approvals: number;
}

/** What a run was decided to get, and which datasets decided it. */
export interface RunReleaseDecision {
  policy: ReleasePolicy;
  approvalsRequired: number;
  datasets: string[];
}

/** The policy of a run given `datasets` (none: `defaults.default`). */
export function releaseDecision(datasets: readonly DatasetRelease[], defaults: ReleaseDefaults): RunReleaseDecision {
  if (datasets.length === 0) return { policy: defaults.default, approvalsRequired: defaults.approvals, datasets: [] };
  let policy: ReleasePolicy = 'direct';
  let approvals = 0;
  for (const d of datasets) {
    policy = stricterPolicy(policy, d.release);
    if (d.release === 'review') approvals = Math.max(approvals, d.approvals ?? defaults.approvals);
  }
  return { policy, approvalsRequired: policy === 'review' ? approvals : defaults.approvals, datasets: datasets.map((d) => d.name) };
}
