/**
 * Output release (DESIGN §10) as the leader and the node share it: the automated disclosure checks
 * the node runs on every run's outputs while reading them back, and what each check reports.
 *
 * The checks are the leader's `release.checks`; they travel in the run spec (camelCase, like the
 * rest of the spec) so a node checks exactly what its leader configured. A finding names the file, the
 * rule and a short detail (a row and a column, a size, a header name): never a cell's value, so a
 * finding can go into a merge request or a log without leaking what it flags.
 */
import { z } from 'zod';

/** How outputs leave the cluster: straight to the researcher, or held until output checkers approve. */
export const releasePolicySchema = z.enum(['direct', 'review']);
export type ReleasePolicy = z.infer<typeof releasePolicySchema>;

/** Which of two policies is stricter (`review` beats `direct`). */
export function stricterPolicy(a: ReleasePolicy, b: ReleasePolicy): ReleasePolicy {
  return a === 'review' || b === 'review' ? 'review' : 'direct';
}

/** The automated checks (leader config `release.checks`, in the spec's camelCase). */
export const disclosureChecksSchema = z.object({
  /** Lower-case extensions with their dot (`.csv`); a file whose extension is not listed is flagged. */
  allowedExtensions: z.array(z.string().min(1).max(32)).max(256),
  /** A file larger than this is flagged. */
  maxFileBytes: z.number().int().positive(),
  /** A CSV/TSV with more data rows (the header not counted) is flagged. */
  maxCsvRows: z.number().int().positive(),
  /** CSV/TSV header names (compared case-insensitively, trimmed) that are flagged. */
  forbiddenColumns: z.array(z.string().min(1).max(256)).max(1024),
  /** A CSV/TSV cell holding a positive integer below this is flagged (the small-cell rule); 0 turns it off. */
  minCellCount: z.number().int().nonnegative(),
});
export type DisclosureChecks = z.infer<typeof disclosureChecksSchema>;

/** The checks DESIGN §10 gives as the default `release.checks`. */
export const DEFAULT_DISCLOSURE_CHECKS: DisclosureChecks = {
  allowedExtensions: ['.csv', '.tsv', '.json', '.txt', '.md', '.png', '.jpg', '.jpeg', '.svg', '.pdf', '.html', '.log'],
  maxFileBytes: 16 * 1024 * 1024,
  maxCsvRows: 5000,
  forbiddenColumns: ['patient_id', 'personnummer', 'ssn'],
  minCellCount: 10,
};

/** What a check can flag. `more` stands for findings left out of a long list (its detail says how many). */
export const disclosureRuleSchema = z.enum(['extension', 'file_size', 'csv_rows', 'forbidden_column', 'small_cell', 'more']);
export type DisclosureRule = z.infer<typeof disclosureRuleSchema>;

/** Most findings one run reports; the rest are summed up in one `more` finding. */
export const MAX_DISCLOSURE_FINDINGS = 200;

/** One finding: the file (relative to /outputs, or `_secd/run.log`), the rule and a short detail. */
export const disclosureFindingSchema = z.object({
  file: z.string().min(1).max(4096),
  rule: disclosureRuleSchema,
  detail: z.string().max(500),
});
export type DisclosureFinding = z.infer<typeof disclosureFindingSchema>;

/** What a run's spec says about release: its policy (for run.json) and the checks to run. */
export const runReleaseSchema = z.object({
  policy: releasePolicySchema,
  checks: disclosureChecksSchema,
});
export type RunRelease = z.infer<typeof runReleaseSchema>;
