/**
 * Every top-level `secd` command, named and described here so that `secd --help` (and a typo's
 * "did you mean") needs nothing but commander: a command's own module — with what it imports
 * (fastify, openpgp, dockerode, systeminformation …) — is loaded only when that command runs.
 * command-catalogue.test.ts checks each entry against what its module registers, so the two cannot
 * drift.
 */
import type { Command } from 'commander';

/** One top-level command: its name and description for help, and how to register it for real. */
export interface CatalogueEntry {
  name: string;
  description: string;
  /** Register the command (and, for `admin`, every subcommand group) on `program`. */
  load(): Promise<(program: Command) => void>;
}

export const COMMAND_CATALOGUE: readonly CatalogueEntry[] = [
  {
    name: 'run',
    description: 'run a project folder on this machine exactly as the cluster would; outputs land in <dir>/outputs/',
    load: async () => (await import('./run-command.js')).registerRunCommand,
  },
  {
    name: 'check',
    description: 'what secd would decide about a push of this repository, offline: secd.yml, Dockerfile, signing, unpushed commits',
    load: async () => (await import('./check-command.js')).registerCheckCommand,
  },
  {
    name: 'up',
    description: 'run a leader and a node in one process (embedded defaults: state under ./.secd, 127.0.0.1:8080)',
    load: async () => (await import('./up-command.js')).registerUpCommand,
  },
  {
    name: 'base-image',
    description: 'build secd/base (Debian stable, Python 3, pip, numpy, PyMySQL, the secd SDK) or a variant of it with debootstrap',
    load: async () => (await import('./base-image-command.js')).registerBaseImageCommand,
  },
  {
    name: 'leader',
    description: 'run the leader: webhook intake, verification, queue, node registry, status page and API',
    load: async () => (await import('./leader-command.js')).registerLeaderCommand,
  },
  {
    name: 'node',
    description: 'run a node: report GPUs and host load to the leader and execute the runs it assigns',
    load: async () => (await import('./node-command.js')).registerNodeCommand,
  },
  {
    name: 'admin',
    description: "operators' commands on the leader's database (nodes, datasets, grants, output release)",
    load: async () => {
      const [admin, datasets, release, backup, stateCopy] = await Promise.all([
        import('./admin-command.js'),
        import('./dataset-admin-command.js'),
        import('./release-admin-command.js'),
        import('./backup-command.js'),
        import('./state-copy-command.js'),
      ]);
      return (program) => {
        admin.registerAdminCommand(program);
        datasets.registerDatasetAdminCommands(program);
        release.registerReleaseAdminCommands(program);
        backup.registerBackupCommand(program);
        stateCopy.registerStateCopyCommand(program);
      };
    },
  },
  {
    name: 'status',
    description: 'nodes, GPUs and runs as tables, from the leader\'s API',
    load: async () => (await import('./status-command.js')).registerStatusCommand,
  },
  {
    name: 'install',
    description: 'set this machine up as a leader or a node: secd user, /etc/secd, credentials, systemd units',
    load: async () => (await import('./install-command.js')).registerInstallCommand,
  },
];

/**
 * Put the commands on `program`: the one `argv` names, registered for real; all the others (or all,
 * for `secd --help`) as names and descriptions only, which is all help and suggestions need.
 */
export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const words = argv.slice(2).filter((a) => !a.startsWith('-'));
  // `secd help run` shows run's own help: load run.
  const named = words[0] === 'help' ? words[1] : words[0];
  for (const entry of COMMAND_CATALOGUE) {
    if (entry.name === named) (await entry.load())(program);
    else program.command(entry.name).description(entry.description);
  }
}
