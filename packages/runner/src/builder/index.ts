// Public API of the builder backend: the managed Docker engine, devcontainer builds and the reference CLI baseline.
export { DockerEngine, BUILDER_NAMESPACE, findExecutable } from './docker-engine.js';
export type { DockerEngineOptions } from './docker-engine.js';
export { DevcontainerBuilder, buildTag, referenceCliPath, parseCliResult, runStreaming } from './devcontainer-builder.js';
export type {
  BuildRequest,
  BuildResult,
  DevcontainerBuilderOptions,
  ReferenceCliResult,
  StreamingOutcome,
} from './devcontainer-builder.js';
export {
  readBuildPlan,
  computeCacheKey,
  dockerfileBaseImages,
  dockerignoreMatcher,
  readDockerignore,
  CACHE_KEY_VERSION,
} from './build-inputs.js';
export type { BuildPlan } from './build-inputs.js';
export { referenceUpAndExec } from './reference-cli.js';
export type { ReferenceUpOptions, ReferenceUpResult } from './reference-cli.js';
export { DockerNotInstalledError, DockerEngineError, DevcontainerBuildError, BaseImageNotFoundError } from './errors.js';
