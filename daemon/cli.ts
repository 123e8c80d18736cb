#!/usr/bin/env node
/**
 * The `secd` command: each subcommand lives in daemon/commands/, parses its flags, loads its config and
 * calls the composition root in daemon/wiring/ (or daemon/ops/) that builds the real adapters.
 * Nothing else in secd reads argv, the environment or the clock on its own.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError } from './config/config-file.js';
import { registerBaseImageCommand } from './commands/base-image-command.js';
import { registerRunCommand } from './commands/run-command.js';
import { registerUpCommand } from './commands/up-command.js';
import { registerAdminCommand } from './commands/admin-command.js';
import { registerDatasetAdminCommands } from './commands/dataset-admin-command.js';
import { registerLeaderCommand } from './commands/leader-command.js';
import { registerNodeCommand } from './commands/node-command.js';
import { registerStatusCommand } from './commands/status-command.js';
import { registerInstallCommand } from './commands/install-command.js';
import { registerBackupCommand } from './commands/backup-command.js';

const program = new Command();
program.name('secd').description('Run machine-learning code on sensitive data from a signed git push').showHelpAfterError();
registerRunCommand(program);
registerUpCommand(program);
registerBaseImageCommand(program);
registerLeaderCommand(program);
registerNodeCommand(program);
registerAdminCommand(program);
registerDatasetAdminCommands(program);
registerStatusCommand(program);
registerInstallCommand(program);
registerBackupCommand(program);

program.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof ConfigError) {
    process.stderr.write(`secd: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`secd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  }
}
