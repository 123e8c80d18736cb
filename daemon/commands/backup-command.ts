/**
 * `secd admin backup <file> --config leader.yml`: an online, consistent copy of the leader's
 * database (secd.db) while the leader keeps running. The git mirrors need no backup: the leader
 * refetches them from GitLab.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { errorText } from '../../scheduler/common/errors.js';
import { backupDatabase } from '../../storage/database.js';
import { ADMIN_CONFIG_OPTION, adminGroup, leaderDataDir } from './admin-command.js';

/** Add `secd admin backup` to the program. */
export function registerBackupCommand(program: Command): void {
  adminGroup(program)
    .command('backup')
    .description("write a consistent copy of the leader's database to <file> while the leader runs")
    .argument('<file>', 'where the copy goes (replaced if it exists)')
    .option(...ADMIN_CONFIG_OPTION)
    .action(async (file: string, options: { config?: string }) => {
      const source = path.join(leaderDataDir(options.config), 'secd.db');
      if (!existsSync(source)) {
        process.stderr.write(`secd admin backup: ${source} does not exist (has the leader with this config ever started?)\n`);
        process.exitCode = 2;
        return;
      }
      const destination = path.resolve(file);
      try {
        const summary = await backupDatabase(source, destination);
        process.stdout.write(`secd admin backup: ${source} -> ${destination} (${summary.bytes} bytes, schema version ${summary.userVersion})\n`);
      } catch (err) {
        process.stderr.write(`secd admin backup: ${errorText(err)}\n`);
        process.exitCode = 1;
      }
    });
}
