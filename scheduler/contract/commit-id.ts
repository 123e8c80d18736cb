/**
 * What counts as a commit id, for every role: a full object name, 40 hex digits (SHA-1 repositories)
 * or 64 (SHA-256 repositories), lowercase as git prints it. It is checked where a push arrives
 * (intake), before the mirror fetches it (verify), on the wire (protocol) and where the node finds
 * the run's commit in its workspace (results). Abbreviated names and anything between 41 and 63
 * digits are refused: git would read those as prefixes, and a prefix is not a commit to run.
 */

/** A full commit id: exactly 40 or exactly 64 lowercase hex digits. */
export const COMMIT_ID_PATTERN = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Whether `text` is a full commit id by {@link COMMIT_ID_PATTERN}. */
export function isCommitId(text: string): boolean {
  return COMMIT_ID_PATTERN.test(text);
}
