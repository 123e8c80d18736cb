/**
 * What counts as a run id, for every role: one pattern, checked on the wire (protocol.ts), where an
 * id becomes a results branch and folder (daemon/results), and anywhere else an id arrives.
 *
 * The choice between the three patterns secd had: ids are made by storage/run-id.ts's newRunId, 10
 * characters of lowercase Crockford base32, and always have been, so every row of every database
 * holds one of those. The check accepts more than that, 1 to 64 letters, digits, "_" and "-" starting
 * with a letter or a digit: exactly what is safe as a folder name (`work_dir/runs/<id>`), in a
 * container name and label, in a git ref and on a command line (no "/", no "..", no leading "-").
 * Checking for the generator's exact shape would buy no safety and would make a node refuse the runs
 * of a leader whose generator changed (nodes and leaders are upgraded one at a time); the narrower
 * check that was here before was used nowhere. A run id goes into a MySQL account name only after
 * scheduler/policy/mysql-grants.ts checks the whole name again.
 */

/** A run id: 1-64 of `[A-Za-z0-9_-]`, starting with a letter or digit (newRunId's ids are a subset). */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Whether `text` is a run id by {@link RUN_ID_PATTERN}. */
export function isRunId(text: string): boolean {
  return RUN_ID_PATTERN.test(text);
}
