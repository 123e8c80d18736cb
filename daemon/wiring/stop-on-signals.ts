/** How the long-running commands end: SIGINT or SIGTERM runs `close` once, then the process exits 0. */
import type { Log } from '../../scheduler/common/log.js';

/** Close cleanly on the first SIGINT/SIGTERM (systemd's stop), ignoring repeats while closing. */
export function stopOnSignals(log: Log, close: () => Promise<void> | void, note = 'stopping'): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, note);
    await close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}
