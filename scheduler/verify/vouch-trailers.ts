/**
 * `Secd-Vouches-For: <full sha>` trailers (DESIGN §13): how a researcher accepts an unsigned (or
 * otherwise refused) commit of their push without rewriting history, by naming it in a later commit
 * they sign. Trailers are read as `git interpret-trailers` reads them, so what `git commit --trailer`
 * wrote is what counts and text in the body of a message never does: only the message's last
 * paragraph, never its first (the subject), and only when that paragraph is a trailer block: every
 * line a `Token: value` trailer (or its indented continuation), or at least a quarter of them with
 * one trailer git itself writes (`Signed-off-by:`, `(cherry picked from commit …)`). Tokens compare
 * case-insensitively, as git compares them. The value must be one full commit id: a short id, two
 * ids on one line or anything else vouches for nothing, so nothing is vouched for by accident.
 */

/** The trailer's token, as researchers write it. */
export const VOUCH_TRAILER = 'Secd-Vouches-For';

const TRAILER_LINE = /^([A-Za-z0-9][A-Za-z0-9-]*)\s*:\s*(.*)$/;
const GIT_WRITTEN = [/^signed-off-by\s*:/i, /^\(cherry picked from commit [0-9a-f]+\)$/];
const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** The trailers of a commit message, in order, as git parses them (continuations joined with a space). */
export function parseTrailers(message: string): Array<{ token: string; value: string }> {
  const lines = message.replace(/\r\n/g, '\n').split('\n');
  // Drop trailing blank lines, then find the last paragraph.
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  let start = lines.length;
  while (start > 0 && lines[start - 1]!.trim() !== '') start--;
  // The first paragraph is the subject: a message of one paragraph has no trailers.
  const before = lines.slice(0, start);
  if (!before.some((l) => l.trim() !== '')) return [];
  const block = lines.slice(start);

  const trailers: Array<{ token: string; value: string }> = [];
  let trailerLines = 0;
  let otherLines = 0;
  let gitWritten = false;
  let last: { token: string; value: string } | null = null;
  for (const line of block) {
    if (/^\s/.test(line) && last) {
      last.value = `${last.value} ${line.trim()}`;
      continue;
    }
    if (GIT_WRITTEN.some((re) => re.test(line))) gitWritten = true;
    const m = TRAILER_LINE.exec(line);
    if (m) {
      last = { token: m[1]!, value: m[2]!.trim() };
      trailers.push(last);
      trailerLines++;
    } else {
      last = null;
      otherLines++;
    }
  }
  const isBlock = otherLines === 0 || (gitWritten && trailerLines * 4 >= trailerLines + otherLines);
  return isBlock ? trailers : [];
}

/** The full commit ids a message vouches for, lower-cased, each once, in the order written. */
export function vouchedCommits(message: string): string[] {
  const out: string[] = [];
  for (const { token, value } of parseTrailers(message)) {
    if (token.toLowerCase() !== VOUCH_TRAILER.toLowerCase()) continue;
    const sha = value.toLowerCase();
    if (FULL_SHA.test(sha) && !out.includes(sha)) out.push(sha);
  }
  return out;
}

/** How many commits a refusal names, and a vouch command lists one by one; past it, git lists them. */
export const LISTED_COMMITS = 5;

/** "this commit" or "these 311 commits (a1b2c3d4, …, and 306 more)", oldest first. */
export function whichCommits(shas: readonly string[]): string {
  if (shas.length === 1) return 'this commit';
  const named = shas.slice(0, LISTED_COMMITS).map((s) => s.slice(0, 8));
  const more = shas.length > LISTED_COMMITS ? ` and ${shas.length - LISTED_COMMITS} more` : '';
  return `these ${shas.length} commits (${named.join(', ')}${more})`;
}

/**
 * The signed empty commit that vouches for `shas` (oldest first; `base` the parent of the oldest, null
 * at the root). Up to LISTED_COMMITS it names each with `--trailer`; past that (a history imported
 * unsigned) git lists the range itself into the message's last paragraph, one trailer a line.
 */
export function vouchCommand(shas: readonly string[], base: string | null): string {
  const start = "git commit --allow-empty -S -m 'Vouch for unsigned commits'";
  if (shas.length <= LISTED_COMMITS) return `${start} ${shas.map((s) => `--trailer '${VOUCH_TRAILER}: ${s}'`).join(' ')}`;
  const last = shas[shas.length - 1]!;
  const range = base === null ? last : `${base}..${last}`;
  return `${start} -m "$(git rev-list --reverse ${range} | sed 's/^/${VOUCH_TRAILER}: /')"`;
}
