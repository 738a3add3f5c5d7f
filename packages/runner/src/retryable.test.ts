// Which runner errors are retryable: real instances of every error class, grouped by the backend step that
// throws them, checked against the one classifier (isRetryable). Terminal ones become a False condition.
import { ApiError, makeStatus } from '@warren/api';
import { InvalidError, isRetryable } from '@warren/base';
import { describe, expect, it } from 'vitest';
import { AccessDeniedError, TerminalSessionNotFoundError } from './access/index.js';
import { BaseImageNotFoundError, DevcontainerBuildError, DockerEngineError, DockerNotInstalledError } from './builder/index.js';
import { EnvironmentNotRunningError, TerminalEnvironmentError } from './environment/index.js';
import {
  DigestMismatchError,
  ImageNotFoundError,
  InvalidImageError,
  InvalidReferenceError,
  NoMatchingPlatformError,
  RegistryError,
  RegistryUnauthorizedError,
  RegistryUnreachableError,
} from './image/index.js';
import {
  CgroupBusyError,
  CgroupError,
  ContainerNotFoundError,
  ExecAgentBuildError,
  ExecAgentUnavailableError,
  ExecError,
  GitCommandError,
  IdmapHelperError,
  InvalidGitUrlError,
  NetworkError,
  RefNotFoundError,
  RepositoryAuthRequiredError,
  RepositoryNotFoundError,
  RepositoryUnreachableError,
  SlotsExhaustedError,
} from './linux/index.js';

const reference = 'docker.io/library/alpine:3.20';

/** Asserts each error's classification, naming the error's class in a failure. */
function expectRetryable(errors: unknown[], retryable: boolean): void {
  for (const error of errors) expect(isRetryable(error), (error as Error).constructor.name).toBe(retryable);
}

describe('isRetryable on runner errors', () => {
  it('clone: the user must fix the URL, the ref or the credentials; network and other git failures are retried', () => {
    expectRetryable(
      [
        new RepositoryNotFoundError('no repository'),
        new RepositoryAuthRequiredError('auth'),
        new RefNotFoundError('no ref'),
        new InvalidGitUrlError('bad url'),
      ],
      false,
    );
    expectRetryable(
      [new RepositoryUnreachableError('dns'), new GitCommandError('disk full'), new ExecError(['git', 'clone'], 128, 'fatal', '')],
      true,
    );
  });

  it('devcontainer.json and container users: invalid configuration is terminal', () => {
    expectRetryable(
      [
        new InvalidError('devcontainer.json is not valid JSON', [], 'InvalidDevcontainerConfig'),
        new InvalidError('user "dev" does not exist', [{ field: 'user', message: 'unknown user' }], 'UnknownContainerUser'),
        new InvalidError('/etc/passwd is a symlink', [], 'UnsupportedUserFile'),
      ],
      false,
    );
  });

  it('pull: a missing, unauthorised, malformed or foreign-platform image is terminal; the registry failing is retried', () => {
    expectRetryable(
      [
        new ImageNotFoundError(reference, 'MANIFEST_UNKNOWN'),
        new InvalidReferenceError('UPPER', 'repository name must be lowercase'),
        new RegistryUnauthorizedError(reference, 'docker.io', 'denied'),
        new NoMatchingPlatformError(reference, 'linux/amd64', ['linux/arm64']),
      ],
      false,
    );
    expectRetryable(
      [
        new RegistryUnreachableError(reference, 'docker.io', 'ECONNREFUSED'),
        new RegistryError(reference, 'docker.io', 429, 'TOOMANYREQUESTS'),
        new DigestMismatchError(reference, 'sha256:aa', 'sha256:bb', 'blob'),
        new InvalidImageError(reference, 'manifest is not JSON'),
      ],
      true,
    );
  });

  it('build: a failing build, a missing base image and a missing Docker are terminal; the engine failing is retried', () => {
    expectRetryable(
      [
        new DevcontainerBuildError('build failed', 'RUN false'),
        new BaseImageNotFoundError('alpine:404', []),
        new DockerNotInstalledError('dockerd'),
      ],
      false,
    );
    expectRetryable(
      [new DockerEngineError('dockerd did not answer', ''), new InvalidImageError('warren-build/x:latest', 'archive lacks manifest.json')],
      true,
    );
  });

  it('start and host objects: failures of the tools and a full runner are retried', () => {
    expectRetryable(
      [
        new NetworkError('ip link failed', 3),
        new CgroupError('write failed', '/sys/fs/cgroup/warren/x'),
        new IdmapHelperError('no compiler'),
        new ExecAgentBuildError('no compiler'),
        new ExecAgentUnavailableError('/run/agent.sock', 'ECONNREFUSED'),
        new SlotsExhaustedError('/var/lib/warren'),
      ],
      true,
    );
  });

  it('requests that name something absent or forbidden are terminal', () => {
    expectRetryable(
      [
        new CgroupBusyError('/sys/fs/cgroup/warren/x'),
        new ContainerNotFoundError('warren-x'),
        new EnvironmentNotRunningError('x'),
        new TerminalSessionNotFoundError('s'),
        new AccessDeniedError('Unauthorized', 'expired'),
        new AccessDeniedError('Forbidden', 'other environment'),
      ],
      false,
    );
  });

  it('a TerminalEnvironmentError is never retried, whatever its code', () => {
    const cause = new RepositoryNotFoundError('no repository');
    expectRetryable(
      [
        new TerminalEnvironmentError('ContentReady', cause.reason, cause.message, { cause, code: 503 }),
        new TerminalEnvironmentError('Running', 'NoCommand', 'no command'),
      ],
      false,
    );
  });

  it('server answers: 5xx, 429 and an unreachable server are retried, other 4xx are not', () => {
    expectRetryable(
      [new ApiError(makeStatus('ServiceUnavailable', 'cannot reach the server')), new ApiError(makeStatus('TooManyRequests', 'slow down'))],
      true,
    );
    expectRetryable([new ApiError(makeStatus('NotFound', 'gone')), new ApiError(makeStatus('Conflict', 'stale'))], false);
  });
});
