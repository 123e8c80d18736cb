#!/usr/bin/env node
/**
 * The `secd` command: each subcommand lives in daemon/commands/, parses its flags, loads its config and
 * calls the composition root in daemon/wiring/ (or daemon/ops/) that builds the real adapters; the
 * catalogue there names them all and loads only the one that runs.
 * Nothing else in secd reads argv, the environment or the clock on its own.
 */
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/command-catalogue.js';

const program = new Command();
program.name('secd').description('Run machine-learning code on sensitive data from a signed git push').showHelpAfterError();
// Only the command being run is loaded (with what it imports); the rest are names for help.
await registerCommands(program, process.argv);

program.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof (await import('./config/config-file.js')).ConfigError) {
    process.stderr.write(`secd: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`secd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
