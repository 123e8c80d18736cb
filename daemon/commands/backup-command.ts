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
import { ADMIN_CONFIG_OPTION, AdminError, adminGroup, loadAdminConfig, type AdminConfig } from './admin-command.js';

/** Add `secd admin backup` to the program. */
export function registerBackupCommand(program: Command): void {
  adminGroup(program)
    .command('backup')
    .description("write a consistent copy of the leader's database to <file> while the leader runs")
    .argument('<file>', 'where the copy goes (replaced if it exists)')
    .option(...ADMIN_CONFIG_OPTION)
    .action(async (file: string, options: { config?: string }) => {
      const config = loadAdminConfig(options.config);
      try {
        checkSqliteState(config, 'secd admin backup');
      } catch (err) {
        if (!(err instanceof AdminError)) throw err;
        process.stderr.write(`secd admin backup: ${err.message}: back the MySQL database up with the database's own tools (mysqldump, mariabackup)\n`);
        process.exitCode = 2;
        return;
      }
      const source = path.join(config.data_dir, 'secd.db');
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

/** `secd admin backup` copies a SQLite state; a MySQL one is backed up with the server's own tools. */
function checkSqliteState(config: AdminConfig, command: string): void {
  if ('state' in config && config.state.engine === 'mysql') {
    const s = config.state;
    throw new AdminError(
      `this leader keeps its state in MySQL (database ${s.database} on ${s.host}:${s.port}): ${command} copies only the embedded SQLite state; back the database up with the server's tools (mariadb-backup, or mariadb-dump --single-transaction ${s.database})`,
    );
  }
}
