// The one place where the Linux backend decides which failures of its steps no retry can fix (terminal: a
// False condition until the spec changes) and which are retried with backoff.
import { InvalidError } from '@warren/base';
import { BaseImageNotFoundError, DevcontainerBuildError, DockerNotInstalledError } from '../builder/index.js';
import { INVALID_DEVCONTAINER_CONFIG } from '../devcontainer/index.js';
import { TerminalEnvironmentError } from '../environment/index.js';
import { ImageNotFoundError, InvalidReferenceError, NoMatchingPlatformError, RegistryUnauthorizedError } from '../image/index.js';
import { GitError } from '../linux/index.js';

/**
 * A step of the backend whose failures are classified: the clone, reading devcontainer.json, the image pull,
 * the image build, and resolving the container's users in its root filesystem.
 */
export type BackendStep = 'clone' | 'devcontainer' | 'pull' | 'build' | 'users';

/**
 * Classifies an error thrown by `step`.
 * @returns the {@link TerminalEnvironmentError} to throw instead (its condition type and reason say what failed),
 *   or undefined when the error is transient and should be thrown as it is (retried with backoff).
 */
export function classifyStepError(step: BackendStep, error: unknown): TerminalEnvironmentError | undefined {
  switch (step) {
    case 'clone':
      if (error instanceof GitError && !error.retryable) {
        return new TerminalEnvironmentError('ContentReady', error.reason, error.message, { cause: error, code: error.code });
      }
      return undefined;
    case 'devcontainer':
      if (error instanceof InvalidError) {
        return new TerminalEnvironmentError('DevcontainerSupported', error.reason || INVALID_DEVCONTAINER_CONFIG, error.message, { cause: error });
      }
      return undefined;
    case 'pull':
      if (
        error instanceof ImageNotFoundError ||
        error instanceof InvalidReferenceError ||
        error instanceof RegistryUnauthorizedError ||
        error instanceof NoMatchingPlatformError
      ) {
        return new TerminalEnvironmentError('ImageReady', error.reason, error.message, { cause: error });
      }
      return undefined;
    case 'build':
      if (error instanceof InvalidError) return new TerminalEnvironmentError('DevcontainerSupported', error.reason, error.message, { cause: error });
      if (error instanceof DevcontainerBuildError || error instanceof BaseImageNotFoundError || error instanceof DockerNotInstalledError) {
        return new TerminalEnvironmentError('ImageReady', error.reason, error.message, { cause: error });
      }
      return undefined;
    case 'users':
      // An unknown user is terminal (`Running=False`, `UnknownContainerUser`).
      if (error instanceof InvalidError) return new TerminalEnvironmentError('Running', error.reason, error.message, { cause: error });
      return undefined;
  }
}
