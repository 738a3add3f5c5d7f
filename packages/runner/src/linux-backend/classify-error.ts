// The one place where the Linux backend turns a failure of one of its steps that no retry can fix into a
// terminal error (a False condition until the spec changes); whether a retry can help is the error's own
// `retryable` flag (@warren/base `isRetryable`), not a list of classes.
import { InvalidError, WarrenError, isRetryable } from '@warren/base';
import { TerminalEnvironmentError } from '../environment/index.js';

/**
 * A step of the backend whose failures are classified: the clone, reading devcontainer.json, the image pull,
 * the image build, and resolving the container's users in its root filesystem.
 */
export type BackendStep = 'clone' | 'devcontainer' | 'pull' | 'build' | 'users';

/** The condition a terminal failure of each step sets to False. */
const CONDITION_OF_STEP = {
  clone: 'ContentReady',
  devcontainer: 'DevcontainerSupported',
  pull: 'ImageReady',
  build: 'ImageReady',
  // An unknown user is terminal (`Running=False`, `UnknownContainerUser`).
  users: 'Running',
} as const satisfies Record<BackendStep, string>;

/**
 * Classifies an error thrown by `step`.
 * @returns the {@link TerminalEnvironmentError} to throw instead (its condition type and reason say what failed),
 *   or undefined when the error is transient (`isRetryable`) and should be thrown as it is (retried with backoff).
 */
export function classifyStepError(step: BackendStep, error: unknown): TerminalEnvironmentError | undefined {
  if (!(error instanceof WarrenError) || isRetryable(error)) return undefined;
  // A build reads devcontainer.json too: its InvalidError is about the configuration, not the image.
  const conditionType = step === 'build' && error instanceof InvalidError ? 'DevcontainerSupported' : CONDITION_OF_STEP[step];
  // A clone keeps the git error's HTTP code (404 for a missing repository, 401 for credentials).
  return new TerminalEnvironmentError(conditionType, error.reason, error.message, {
    cause: error,
    ...(step === 'clone' ? { code: error.code } : {}),
  });
}
