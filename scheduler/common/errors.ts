/**
 * What secd does with a caught value, written once for every role: JavaScript may throw anything, so
 * a reason or a log line takes the message of an Error and the text of anything else, and file-system
 * code asks "is this the system error I expect" (ENOENT, EEXIST...) without casting at each catch.
 */

/** The message of a thrown value: an Error's message, anything else as text. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether `err` is a Node system error with a code (`ENOENT`, `EEXIST`...), and `code` when it is given. */
export function isErrno(err: unknown, code?: string): err is NodeJS.ErrnoException {
  if (!(err instanceof Error)) return false;
  const found = (err as NodeJS.ErrnoException).code;
  return typeof found === 'string' && (code === undefined || found === code);
}
