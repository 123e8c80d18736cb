/**
 * What `secd check` reports: one finding per line, each with a level that says whether a push would
 * be refused for it. Only an `error` refuses; a `warning` is something the researcher likely did not
 * mean (an unknown key, a tracked outputs/ folder); `ok` and `note` say what was checked and what only
 * the leader can decide.
 */

/** How much a finding weighs: an `error` means the leader would refuse the push. */
export type FindingLevel = 'ok' | 'note' | 'warning' | 'error';

/** One line of `secd check`'s report. */
export interface Finding {
  level: FindingLevel;
  /** What it is about: `secd.yml`, `Dockerfile`, `signing`, `commits`, `files`, `leader`, `hook`. */
  topic: string;
  /** One sentence; for an error, what to do about it. */
  text: string;
}

/** A finding; the constructors read like the report. */
export const ok = (topic: string, text: string): Finding => ({ level: 'ok', topic, text });
/** Something only the leader can decide, or context for the other lines. */
export const note = (topic: string, text: string): Finding => ({ level: 'note', topic, text });
/** Likely a mistake, but the push would be accepted. */
export const warning = (topic: string, text: string): Finding => ({ level: 'warning', topic, text });
/** The push would be refused. */
export const error = (topic: string, text: string): Finding => ({ level: 'error', topic, text });

/** The finding as one line: level, topic, text; newlines in the text are folded. */
export function formatFinding(f: Finding): string {
  return `${f.level.padEnd(7)} ${f.topic}: ${f.text.replace(/\s*\n\s*/g, ' ')}`;
}

/** The last line: the verdict, with the counts behind it. */
export function verdictLine(findings: readonly Finding[]): string {
  const errors = findings.filter((f) => f.level === 'error').length;
  const warnings = findings.filter((f) => f.level === 'warning').length;
  const w = warnings === 0 ? '' : ` (${warnings} warning${warnings === 1 ? '' : 's'})`;
  if (errors === 0) return `secd check: a push would be accepted${w}`;
  return `secd check: a push would be refused: ${errors} problem${errors === 1 ? '' : 's'}${w}`;
}
