/** `secd install --role leader|node [--root DIR]`: user, folders, config template, credentials, units. */
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { formatInstallReport, installSecd, type InstallHost } from '../ops/install.js';
import { INSTALL_PATHS, packagedUnitsDir, SERVICE_USER, type InstallRole } from '../ops/install-templates.js';

const run = promisify(execFile);

/** The real machine: systemd-sysusers, chown and daemon-reload. */
function systemHost(): InstallHost {
  return {
    async applySysusers(files) {
      await run('systemd-sysusers', [...files]);
    },
    async chownToServiceUser(dir) {
      await run('chown', [`${SERVICE_USER}:${SERVICE_USER}`, dir]);
    },
    async reloadSystemd() {
      // /run/systemd/system exists only when systemd is PID 1 (sd_booted()).
      if (!existsSync('/run/systemd/system')) return false;
      await run('systemctl', ['daemon-reload']);
      return true;
    },
  };
}

/** The command that started this process: node plus the real path of secd's entry script. */
function runningSecdCommand(): string[] {
  const script = process.argv[1];
  if (!script) return [process.execPath];
  return [process.execPath, realpathSync(script)];
}

function parseRole(value: string): InstallRole {
  if (value !== 'leader' && value !== 'node') throw new InvalidArgumentError('must be "leader" or "node"');
  return value;
}

/** Add `secd install` to the program. */
export function registerInstallCommand(program: Command): void {
  program
    .command('install')
    .description(`set this machine up as a leader or a node: ${SERVICE_USER} user, ${INSTALL_PATHS.configDir}, credentials, systemd units`)
    .requiredOption('--role <role>', 'leader or node', parseRole)
    .option('--root <dir>', 'install into a staging tree instead of this machine (no user, no chown, no daemon-reload)')
    .option('--secd-command <command>', 'what the units start (default: this node binary and this secd); e.g. /usr/bin/secd')
    .option('--public-url <url>', 'leader: public_url in leader.yml (default http://<hostname>:8080)')
    .option('--gitlab-url <url>', 'leader: gitlab.url in leader.yml')
    .option('--leader <url>', 'node: the leader\'s websocket URL in node.yml, e.g. ws://leader:8080/v1/nodes')
    .action(async (options: { role: InstallRole; root?: string; secdCommand?: string; publicUrl?: string; gitlabUrl?: string; leader?: string }) => {
      const unitsDir = packagedUnitsDir();
      if (unitsDir === null) {
        process.stderr.write('secd install: the systemd/ folder is missing from this secd installation\n');
        process.exitCode = 2;
        return;
      }
      const staging = options.root !== undefined;
      const root = staging ? path.resolve(options.root!) : '/';
      const result = await installSecd(
        {
          role: options.role,
          root,
          staging,
          secdCommand: options.secdCommand ? options.secdCommand.trim().split(/\s+/) : runningSecdCommand(),
          unitsDir,
          hostname: hostname(),
          ...(options.publicUrl !== undefined ? { publicUrl: options.publicUrl } : {}),
          ...(options.gitlabUrl !== undefined ? { gitlabUrl: options.gitlabUrl } : {}),
          ...(options.leader !== undefined ? { leaderUrl: options.leader } : {}),
        },
        staging ? null : systemHost(),
      );
      if (!result.ok) {
        process.stderr.write(`secd install: ${result.reason}\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(formatInstallReport(options.role, root, result));
    });
}
