/** `secd base-image`: build secd/base or one of its variants from a Debian mirror. */
import type { Command } from 'commander';
import { buildBaseImage } from '../ops/base-image.js';
import { parseVariant, variantSpec } from '../ops/base-image-variants.js';
import { loadUpConfig } from '../config/up-config.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { createLogger } from '../wiring/logger.js';

/** Add `secd base-image` to the program. */
export function registerBaseImageCommand(program: Command): void {
  program
    .command('base-image')
    .description('build secd/base (Debian stable, Python 3, pip, numpy, PyMySQL, the secd SDK) or a variant of it with debootstrap')
    .option('--variant <name>', 'base (secd/base), torch (secd/base:torch: PyTorch on the CPU) or torch-cuda (secd/base:torch-cuda: PyTorch for CUDA, Debian trixie)', 'base')
    .option('--mirror <url>', 'Debian mirror (default: node.yml base_image_mirror, else this machine\'s apt sources)')
    .option('--config <file>', 'up.yml whose node: section names the work dir and mirror (default: embedded defaults)')
    .option('--refresh', 'run debootstrap again instead of re-importing the cached root filesystem (downloaded packages stay cached)')
    .action(async (options: { variant: string; mirror?: string; config?: string; refresh?: boolean }) => {
      const variant = parseVariant(options.variant);
      if (!variant.ok) {
        process.stderr.write(`secd base-image: ${variant.reason}\n`);
        process.exitCode = 2;
        return;
      }
      const config = loadUpConfig(options.config ?? null, process.cwd());
      const log = createLogger({ fd: 2, level: 'warn' });
      const mirror = options.mirror ?? config.node.base_image_mirror;
      const image = variantSpec(variant.variant).image;
      const t0 = Date.now();
      const built = await buildBaseImage(createDockerEngine({ logger: log }), {
        variant: variant.variant,
        ...(mirror ? { mirror } : {}),
        cacheDir: `${config.node.work_dir}/base-image`,
        refreshRootfs: options.refresh ?? false,
        onProgress: (line: string) => process.stdout.write(`${line}\n`),
      });
      if (!built.ok) {
        process.stderr.write(`secd base-image: ${built.reason}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`secd base-image: built ${image} (${built.imageId}) in ${Math.round((Date.now() - t0) / 1000)} s\n`);
    });
}
