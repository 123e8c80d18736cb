/**
 * Words added to every `secd` commit status of a run (commit-statuses.ts): secd.yml's warnings.
 */

/** GitLab keeps 255 characters of a commit status description. */
const STATUS_ROOM = 255;

/**
 * A commit status description followed by secd.yml's warnings: an unknown key (`run_for: 1`)
 * otherwise runs with the default and says so only inside run.json, where nobody looks. Warnings
 * that do not fit GitLab's 255 characters are counted; the run page lists them all.
 */
export function withSecdYmlWarnings(description: string, warnings: readonly string[]): string {
  if (warnings.length === 0) return description;
  // "secd.yml: " once, then each warning without it.
  const items = warnings.map((w) => w.replace(/^secd\.yml: /, ''));
  const countOf = (shown: number) => (shown < items.length ? `; ${items.length - shown} more on the run page` : '');
  let text = `${description}; secd.yml: ${items[0]}`;
  let shown = 1;
  for (const item of items.slice(1)) {
    if (`${text}; ${item}${countOf(shown + 1)}`.length > STATUS_ROOM) break;
    text += `; ${item}`;
    shown += 1;
  }
  text += countOf(shown);
  return text.length > STATUS_ROOM ? `${text.slice(0, STATUS_ROOM - 1)}…` : text;
}
