/**
 * The last lines of a failed build's build.log, which the node sends with the run's result so the run
 * page can show why the build failed (web/pages.ts) without the researcher opening the results branch.
 *
 * Only for a `direct` run: a `review` run's logs are outputs held for review like any other file
 * (DESIGN §10), so its result carries none. The lines are the log's last BUILD_LOG_TAIL_LINES
 * non-blank ones, terminal colour codes and other control characters removed, each line cut at
 * MAX_LINE characters, credentials in URLs (the clone's token, should git print it) redacted, and the
 * whole within the protocol's limit.
 */
import { BUILD_LOG_TAIL_LINES, PROTOCOL_LIMITS } from '../../scheduler/contract/protocol.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';
import { redactCredentials, urlSecrets } from '../../scheduler/common/redact.js';

/** Characters kept of one log line. */
const MAX_LINE = 300;

// ANSI escape sequences (colours, cursor moves), then what is left of other control characters.
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b[@-Z\\-_]/g;
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/g;

/** Whether the run's result carries its build.log tail: a failed build of a `direct` run. */
export function carriesBuildLogTail(spec: Pick<RunSpec, 'release'>, ended: { end: string; startedAt: string | null }, imageId: string | null): boolean {
  const direct = (spec.release?.policy ?? 'direct') === 'direct';
  return direct && ended.end === 'failed' && ended.startedAt === null && imageId === null;
}

/** The last lines of `log` as the run page shows them (see the header); empty for an empty log. */
export function buildLogTail(log: Buffer | string, secrets: Iterable<string> = []): string {
  const text = (typeof log === 'string' ? log : log.toString('utf8')).replace(/\r\n?/g, '\n').replace(ANSI, '');
  const lines = text
    .split('\n')
    .map((l) => l.replace(CONTROL, '').trimEnd())
    .filter((l) => l.trim() !== '');
  const tail = lines.slice(-BUILD_LOG_TAIL_LINES).map((l) => (l.length > MAX_LINE ? `${l.slice(0, MAX_LINE - 1)}…` : l));
  let out = redactCredentials(tail.join('\n'), secrets);
  const max = PROTOCOL_LIMITS.buildLogTail;
  if (out.length > max) out = `…${out.slice(out.length - max + 1)}`;
  return out;
}

/** The tail for `spec`'s result, with the run's clone and results URLs' credentials redacted. */
export function buildLogTailFor(spec: Pick<RunSpec, 'source' | 'resultsRemote'>, log: Buffer): string {
  const secrets = [...urlSecrets(spec.source), ...(spec.resultsRemote ? urlSecrets(spec.resultsRemote) : [])];
  return buildLogTail(log, secrets);
}
