// Errors of the builder backend (managed Docker engine + reference devcontainer CLI builds). Retryable or
// not follows the HTTP code (@warren/base isRetryableCode) except where a class says otherwise.
import { WarrenError } from '@warren/base';

/**
 * `dockerd` or `docker` is not on the PATH. The builder backend is optional (DESIGN.md "Dependencies"):
 * only configs with `build` or `features` need it, and the message says how to install it. HTTP 503, but not
 * retryable: nothing changes until an administrator installs Docker.
 */
export class DockerNotInstalledError extends WarrenError {
  constructor(
    readonly binary: string,
    options?: { cause?: unknown },
  ) {
    super(
      'BuilderNotInstalled',
      503,
      `${binary} is not installed; devcontainer.json "build" and "features" need a Docker engine: apt-get install docker.io`,
      { ...options, retryable: false },
    );
  }
}

/** The managed `dockerd` did not come up (or died); `logTail` holds the end of its log file. */
export class DockerEngineError extends WarrenError {
  constructor(
    message: string,
    readonly logTail: string,
    options?: { cause?: unknown },
  ) {
    super('BuilderEngineFailed', 503, logTail.trim() ? `${message}; dockerd log tail:\n${logTail.trim()}` : message, options);
  }
}

/**
 * `devcontainer build` failed: a Dockerfile syntax error, a failing `RUN`, a feature's install script ...
 * `logTail` holds the last lines of the build output, which the message repeats so a user can act on it.
 */
export class DevcontainerBuildError extends WarrenError {
  constructor(
    message: string,
    readonly logTail: string,
    options?: { cause?: unknown },
  ) {
    super('DevcontainerBuildFailed', 422, logTail.trim() ? `${message}; build log tail:\n${logTail.trim()}` : message, options);
  }
}

/**
 * A base image (Dockerfile `FROM` or devcontainer.json `image`) could be found neither at its mirrors
 * nor at its registry. `attempts` lists each reference tried with the error it gave.
 */
export class BaseImageNotFoundError extends WarrenError {
  constructor(
    readonly image: string,
    readonly attempts: readonly string[],
    options?: { cause?: unknown },
  ) {
    super('BaseImageNotFound', 422, `base image ${image} not found${attempts.length ? ` (tried: ${attempts.join('; ')})` : ''}`, options);
  }
}
