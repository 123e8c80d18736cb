/**
 * The words of a review (DESIGN §10): the merge request's title and description (the run, why it is
 * held, every file with its size, every automated finding) and the comments secd leaves on it. Plain
 * functions, so what a checker reads is tested as text.
 */

/** Most files listed in a description (GitLab takes a megabyte; a checker reads far less). */
export const MAX_LISTED_FILES = 500;

/** What a review request says about its run. */
export interface ReviewSubject {
  runId: string;
  project: string;
  commit: string;
  user: string;
  /** How the run ended on its node and why (`succeeded`, `timed_out: stopped at …`). */
  end: string;
  reason: string;
  datasets: readonly string[];
  approvalsRequired: number;
  reviewCommit: string;
  files: ReadonlyArray<{ path: string; bytes: number }>;
  /** The automated findings (DisclosureFinding, as stored). */
  findings: ReadonlyArray<{ file: string; rule: string; detail: string }>;
}

/** `Release run <id>: <project>@<short sha> by <researcher>`. */
export function reviewTitle(s: Pick<ReviewSubject, 'runId' | 'project' | 'commit' | 'user'>): string {
  return `Release run ${s.runId}: ${s.project}@${s.commit.slice(0, 8)} by ${s.user}`;
}

/** The merge request's description, in GitLab Markdown. */
export function reviewDescription(s: ReviewSubject): string {
  const total = s.files.reduce((sum, f) => sum + f.bytes, 0);
  const why = s.datasets.length > 0 ? `it read ${s.datasets.map(code).join(', ')}` : "the leader's release.default is review";
  const lines = [
    `Run \`${s.runId}\` of ${code(s.project)} at \`${s.commit.slice(0, 12)}\`, pushed by @${s.user}, ended **${s.end}**: ${oneLine(s.reason)}.`,
    '',
    `Its outputs and logs are held because ${why}. They reach the researcher's project only after ${s.approvalsRequired} output checker${s.approvalsRequired === 1 ? '' : 's'} approve this merge request.`,
    'Approve to release; close it to withhold. Approvals by the run\'s researcher or by secd do not count.',
    `Only commit \`${s.reviewCommit}\` is released: a push to this branch stops the release.`,
    '',
    `### Files (${s.files.length}, ${formatBytes(total)})`,
    '',
    '| file | size |',
    '| --- | ---: |',
    ...s.files.slice(0, MAX_LISTED_FILES).map((f) => `| ${code(f.path)} | ${formatBytes(f.bytes)} |`),
    ...(s.files.length > MAX_LISTED_FILES ? [`| … ${s.files.length - MAX_LISTED_FILES} more files | |`] : []),
    '',
    `### Automated disclosure checks`,
    '',
    ...(s.findings.length === 0 ? ['No findings.'] : s.findings.map((f) => `- ${code(f.file)}: **${f.rule}** — ${oneLine(f.detail)}`)),
  ];
  return `${lines.join('\n')}\n`;
}

/** The comment left when the outputs are released. */
export function releasedNote(reviewers: readonly string[], branch: string, commit: string): string {
  return `Released after review by ${reviewers.map((r) => `@${r}`).join(', ')}: commit \`${commit}\` was pushed to the researcher's project as branch \`${branch}\`. secd closes this merge request.`;
}

/** The comment left when the branch moved under the review. */
export function movedNote(reviewCommit: string, head: string | null): string {
  return head === null
    ? `Nothing was released: the review branch is gone, so secd cannot tell that \`${reviewCommit}\` is what was reviewed.`
    : `Nothing was released: the review branch now points at \`${head}\`, not at \`${reviewCommit}\`, the commit secd put up for review. Approvals of a changed branch do not release anything.`;
}

/** `1.5 MiB`: sizes as a checker reads them. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number(v.toPrecision(3))} ${units[i]}`;
}

// File names are the researcher's: in backticks, with backticks and table pipes made harmless.
function code(text: string): string {
  return `\`${oneLine(text).replace(/`/g, "'").replace(/\|/g, '\\|')}\``;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
