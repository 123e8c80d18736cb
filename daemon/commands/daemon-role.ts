/**
 * What `secd leader` and `secd node` share: a required `--config`, a role started from it, a one-line
 * banner on a terminal only (under systemd stdout is the journal, kept as JSON lines), and a clean
 * stop on SIGINT/SIGTERM.
 */
import type { Command } from 'commander';
import type { Log } from '../../scheduler/common/log.js';
import { stopOnSignals } from '../wiring/stop-on-signals.js';

/** A started role as its command reports and stops it. */
export interface StartedRole {
  log: Log;
  /** The line a person at a terminal reads once the role runs. */
  banner: string;
  close(): Promise<void> | void;
  /** What the log says when a signal stops it (default "stopping"). */
  stopNote?: string;
}

/** Add `secd <name> --config <file>`, whose action starts the role from that file. */
export function registerDaemonRole(
  program: Command,
  role: { name: string; description: string; configFile: string; start(configFile: string): Promise<StartedRole> },
): void {
  program
    .command(role.name)
    .description(role.description)
    .requiredOption('--config <file>', role.configFile)
    .action(async (options: { config: string }) => {
      const started = await role.start(options.config);
      if (process.stdout.isTTY) process.stdout.write(`${started.banner}\n`);
      stopOnSignals(started.log, () => started.close(), started.stopNote);
    });
}
