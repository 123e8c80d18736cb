/**
 * The process logger: JSON lines (pino) to stdout for the daemons, which the journal keeps as is.
 * Only main creates one; everything else receives a `Log`.
 */
import { pino } from 'pino';
import type { Log } from '../../scheduler/common/log.js';
import { REDACTED } from '../../scheduler/common/redact.js';

/** A JSON-lines logger at `level` writing to the given file descriptor (1 = stdout, 2 = stderr). */
export function createLogger(opts: { level?: string; fd?: number; name?: string } = {}): Log {
  return pino(
    {
      name: opts.name ?? 'secd',
      level: opts.level ?? process.env.SECD_LOG_LEVEL ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      // Secrets never reach the journal, whatever object a caller logs.
      redact: { paths: ['*.token', '*.password', '*.webhook_secret', '*.admin_password', 'headers["x-gitlab-token"]'], censor: REDACTED },
    },
    pino.destination({ fd: opts.fd ?? 1, sync: false }),
  ) as unknown as Log;
}
