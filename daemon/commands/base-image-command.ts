/** `secd base-image`: build secd/base from a Debian mirror. */
import type { Command } from 'commander';
import { buildBaseImage } from '../ops/base-image.js';
import { loadUpConfig } from '../config/up-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';

/** Add `secd base-image` to the program. */
export function registerBaseImageCommand(program: Command): void {
  program
    .command('base-image')
    .description('build the secd/base image (Debian stable, Python 3, numpy, PyMySQL, the secd SDK) with debootstrap')
    .option('--mirror <url>', 'Debian mirror (default: this machine\'s apt sources)')
    .option('--refresh', 'run debootstrap again instead of re-importing the cached root filesystem')
    .action(async (options: { mirror?: string; refresh?: boolean }) => {
      const config = loadUpConfig(null, process.cwd());
      const log = createLogger({ fd: 2, level: 'warn' });
      const image = await buildBaseImage(createDockerEngine({ logger: log }), {
        ...(options.mirror ? { mirror: options.mirror } : {}),
        cacheDir: `${config.node.work_dir}/base-image`,
        refreshRootfs: options.refresh ?? false,
        onProgress: (line: string) => process.stdout.write(`${line}\n`),
      });
      if (!image.ok) {
        process.stderr.write(`secd base-image: ${image.reason}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`secd base-image: built secd/base (${image.imageId})\n`);
    });
}
