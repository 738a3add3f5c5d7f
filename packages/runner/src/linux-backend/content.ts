// The environment's content: the repository cloned into its workspace.
import { mkdir } from 'node:fs/promises';
import type { Environment } from '@warren/api';
import type { StepContext } from '../environment/index.js';
import { cloneRepository } from '../linux/index.js';
import { classifyStepError } from './classify-error.js';
import type { BackendContext } from './context.js';
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
  const paths = environmentPaths(backend.dataDir, id);
  await mkdir(paths.dir, { recursive: true, mode: 0o711 });
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
