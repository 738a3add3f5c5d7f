// The environment's content: the repository cloned into its workspace.
import { mkdir } from 'node:fs/promises';
import type { Environment } from '@warren/api';
import type { StepContext } from '../environment/index.js';
import { cloneRepository } from '../linux/index.js';
import { classifyStepError } from './classify-error.js';
import type { BackendContext } from './context.js';
import { prepareDisk } from './disk.js';
import { environmentPaths } from './paths.js';
import { updateState } from './state-file.js';

/**
 * {@link EnvironmentBackend.prepareContent}: clones `spec.source.git` into the workspace and records the commit.
 * @throws {TerminalEnvironmentError} (ContentReady) for clone failures no retry can fix; other errors as thrown.
 */
export async function prepareContent(
  backend: BackendContext,
  environment: Environment,
  context: StepContext,
): Promise<{ commit?: string }> {
  const id = environment.metadata.id;
  await mkdir(environmentPaths(backend.dataDir, id).dir, { recursive: true, mode: 0o711 });
  // With a disk quota the clone goes onto the environment's disk (made and mounted here on first use).
  const paths = await prepareDisk(backend, environment, context.logger);
  const { url, ref } = environment.spec.source.git;
  try {
    const result = await cloneRepository({
      url,
      ...(ref ? { ref } : {}),
      targetDir: paths.workspace,
      allowFileUrls: backend.options.allowFileUrls ?? false,
      signal: context.signal,
      ...(backend.backgroundCgroup ? { cgroup: backend.backgroundCgroup } : {}),
      logger: context.logger,
      onProgress: (progress) => context.onProgress({ step: 'clone', message: progress.line }),
    });
    await updateState(backend.dataDir, id, (state) => {
      if (result.commit) state.commit = result.commit;
    });
    return result.commit ? { commit: result.commit } : {};
  } catch (error) {
    throw classifyStepError('clone', error) ?? error;
  }
}
