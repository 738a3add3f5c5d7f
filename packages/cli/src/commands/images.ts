// `warren image list|prune`: the image store of the runner on this host.
import type { Command } from 'commander';
import { join } from 'node:path';
import type { CommandContext } from '../command-context.js';
import { render } from '../output.js';
import { defaultDataDir } from './daemons.js';

/** Registers `image list` and `image prune`. */
export function registerImageCommands(program: Command, context: CommandContext): void {
  const image = program.command('image').description("manage the image store of this host's runner (run on the runner host)");
  image
    .command('list')
    .alias('ls')
    .description('list pulled and built images')
    .option('--data-dir <dir>', 'the data dir given to "warren up" or "warren runner" (default $WARREN_DATA_DIR or /var/lib/warren)')
    .action(async (options: { dataDir?: string }) => {
      // Loaded here, not at the top: the runner package is large and most commands never need it.
      const { listImages } = await import('@warren/runner');
      const images = await listImages(join(options.dataDir ?? defaultDataDir(), 'runner'));
      context.stdout.write(
        render(images, context.options().output, [
          { header: 'REFERENCE', value: (item) => item.reference },
          { header: 'DIGEST', value: (item) => item.digest.slice(0, 19) },
          { header: 'PLATFORM', value: (item) => `${item.platform.os}/${item.platform.architecture}` },
          { header: 'LAYERS', value: (item) => String(item.layers.length) },
        ]),
      );
    });
  image
    .command('prune')
    .description('remove images no environment on this runner uses, and their unshared layers')
    .option('--data-dir <dir>', 'the data dir given to "warren up" or "warren runner" (default $WARREN_DATA_DIR or /var/lib/warren)')
    .action(async (options: { dataDir?: string }) => {
      const { pruneImages } = await import('@warren/runner');
      const report = await pruneImages(join(options.dataDir ?? defaultDataDir(), 'runner'));
      if (context.options().output === 'table') {
        context.stdout.write(
          `removed ${report.removedImages.length} images and ${report.removedLayers.length} layers, freed ${report.freedBytes} bytes; ${report.inUse.length} images in use kept\n`,
        );
      } else {
        context.stdout.write(render(report, context.options().output, []));
      }
    });
}
