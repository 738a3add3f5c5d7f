// Resolving an environment: its devcontainer.json merged with the metadata of its image, which is taken from
// the image store, pulled, or built from the config (`build`/`features`); the result is persisted.
import { appendFile, mkdir, open as openFile } from 'node:fs/promises';
import type { Environment } from '@warren/api';
import { repositoryBasename } from '@warren/api';
import { errorMessage } from '@warren/base';
import { DevcontainerBuilder, DockerEngine } from '../builder/index.js';
import { type ResolvedDevcontainer, loadDevcontainerConfig, resolveDevcontainer } from '../devcontainer/index.js';
import type { ResolvedEnvironment, StepContext } from '../environment/index.js';
import type { ImageInfo } from '../image/index.js';
import { classifyStepError } from './classify-error.js';
import type { BackendContext } from './context.js';
import { locateEnvironment } from './disk.js';
import { updateState } from './state-file.js';

/** Least time between two registry lookups of one stored tag on the start path (background refresh), ms. */
const TAG_REFRESH_MS = 5 * 60_000;

/**
 * Resolves environments for one backend. Holds what outlives one resolve: the builder (created on the first
 * config that needs a build, starting Docker only then) and when each stored tag was last refreshed.
 */
export class EnvironmentResolver {
  /** When a background refresh of each tag last started, ms since the epoch. */
  private readonly tagRefreshedAt = new Map<string, number>();

  /** @param builder the builder backend to use; default made on first need (see {@link LinuxBackendOptions.builder}). */
  constructor(
    private readonly backend: BackendContext,
    private builder: DevcontainerBuilder | undefined,
  ) {}

  /**
   * {@link EnvironmentBackend.resolve}: locates and parses devcontainer.json, gets the image, merges its
   * metadata and persists the result in the state file.
   * @throws {TerminalEnvironmentError} for a bad config (DevcontainerSupported) or an image no retry can get
   *   (ImageReady); other errors as thrown.
   */
  async resolve(environment: Environment, context: StepContext): Promise<ResolvedEnvironment> {
    const backend = this.backend;
    const id = environment.metadata.id;
    const paths = await locateEnvironment(backend, id);
    const repositoryName = repositoryBasename(environment.spec.source.git.url);
    const base = { defaultImage: backend.options.config.defaultImage, repositoryDir: paths.workspace, repositoryName, environmentId: id };
    let first: ResolvedDevcontainer;
    let parsed;
    try {
      parsed = await loadDevcontainerConfig(paths.workspace, environment.spec.devcontainer.path);
      first = resolveDevcontainer({ ...base, ...(parsed ? { config: parsed } : {}) });
    } catch (error) {
      throw classifyStepError('devcontainer', error) ?? error;
    }
    let reference: string;
    let image: ImageInfo;
    if (first.build && first.configFile) {
      ({ reference, image } = await this.build(id, first.configFile, context));
    } else {
      reference = first.image ?? backend.options.config.defaultImage;
      image = await this.pull(reference, context);
    }
    const devcontainer = resolveDevcontainer({
      ...base,
      ...(parsed ? { config: parsed } : {}),
      image: {
        reference,
        metadataLabel: image.config.labels['devcontainer.metadata'],
        user: image.config.user,
        // `devcontainer build` appends the config itself to the label; do not run its commands twice.
        metadataIncludesConfig: first.build !== undefined,
      },
    });
    const summary: ResolvedEnvironment = {
      ...(devcontainer.configFile ? { configPath: devcontainer.configFile } : {}),
      image: reference,
      imageDigest: image.digest,
      remoteUser: devcontainer.remoteUser,
      containerUser: devcontainer.containerUser,
      workspaceFolder: devcontainer.workspaceFolder,
      ports: devcontainer.forwardPorts.map((port) => {
        const label = devcontainer.portsAttributes[String(port)]?.label;
        return { port, ...(label ? { label } : {}) };
      }),
      unsupported: devcontainer.unsupported.map((entry) => ({ property: entry.property, message: entry.message, source: entry.source })),
    };
    await updateState(backend.dataDir, id, (state) => {
      state.resolved = {
        devcontainer,
        summary,
        image: {
          reference,
          digest: image.digest,
          layers: image.layers,
          env: image.config.env,
          entrypoint: image.config.entrypoint,
          cmd: image.config.cmd,
        },
      };
    });
    for (const warning of devcontainer.warnings) context.logger.info({ warning }, 'devcontainer warning');
    return summary;
  }

  /**
   * The image for `reference`: the stored one when the store has it (no registry round trip on the start
   * path; a tag is then refreshed in the background, at most every {@link TAG_REFRESH_MS}, so the next
   * environment gets a moved tag), otherwise a pull with progress. Registry answers no retry can fix become
   * terminal (ImageReady=False).
   */
  private async pull(reference: string, context: StepContext): Promise<ImageInfo> {
    const images = this.backend.images;
    const stored = await images.get(reference).catch(() => undefined);
    if (stored) {
      this.refreshTag(stored);
      return stored;
    }
    context.onProgress({ step: 'image', message: `Pulling ${reference}` });
    try {
      return await images.pull(reference, {
        signal: context.signal,
        onProgress: (bytesDone, bytesTotal) =>
          context.onProgress({ step: 'image', message: `Pulling ${reference}`, bytesDone, bytesTotal }),
      });
    } catch (error) {
      throw classifyStepError('pull', error) ?? error;
    }
  }

  /**
   * Pulls a stored tag again in the background when it was last resolved more than {@link TAG_REFRESH_MS}
   * ago (errors are logged: the stored image stays in use). Digest references never change.
   */
  private refreshTag(stored: ImageInfo): void {
    const { images, logger } = this.backend;
    const reference = stored.reference;
    const last = Math.max(Date.parse(stored.pulledTime) || 0, this.tagRefreshedAt.get(reference) ?? 0);
    if (Date.now() - last < TAG_REFRESH_MS || reference.includes('@')) return;
    this.tagRefreshedAt.set(reference, Date.now());
    const started = performance.now();
    images.pull(reference).then(
      (image) =>
        logger.debug({ reference, digest: image.digest, durationMs: Math.round(performance.now() - started) }, 'image tag refreshed'),
      (error: unknown) => logger.warn({ reference, error: errorMessage(error) }, 'image tag refresh failed; the stored image stays in use'),
    );
  }

  /**
   * Builds a config with `build` or `features` through the builder backend (the reference CLI on the
   * runner's own Docker engine), appending the build output to the lifecycle log, and imports the image.
   * Build failures, missing base images and an absent Docker engine are terminal (ImageReady=False).
   */
  private async build(id: string, configFile: string, context: StepContext): Promise<{ reference: string; image: ImageInfo }> {
    const { dataDir, logger, images, options } = this.backend;
    const paths = await locateEnvironment(this.backend, id);
    await mkdir(paths.logs, { recursive: true });
    context.onProgress({ step: 'build', message: `Building the image of ${configFile}` });
    await appendFile(paths.lifecycleLog, `\n=== image build of ${configFile} ===\n`);
    const log = await openFile(paths.lifecycleLog, 'a');
    try {
      this.builder ??= new DevcontainerBuilder({ engine: new DockerEngine({ dataDir, logger }), logger });
      const result = await this.builder.build({
        workspaceDir: paths.workspace,
        configPath: configFile,
        registryMirrors: options.config.mirrors,
        signal: context.signal,
        onLog: (line) => {
          void log.write(`${line}\n`).catch(() => {});
          context.onProgress({ step: 'build', message: line.slice(0, 200) });
        },
      });
      const image = await images.importDockerArchive(result.dockerArchivePath, result.imageName);
      return { reference: result.imageName, image };
    } catch (error) {
      throw classifyStepError('build', error) ?? error;
    } finally {
      await log.close();
    }
  }
}
