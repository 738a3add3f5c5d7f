// The registry of wire reasons: every `reason` a Warren error or Status envelope carries, with its HTTP code.
// It lives in @warren/base so `WarrenError.reason` can be typed by it; @warren/api re-exports it.

/**
 * Registry of reasons: each CamelCase reason maps to the HTTP status code it has as an API error
 * (Kubernetes API conventions, "Response Status Kind": `reason` is a machine-readable token, `code` the
 * HTTP status). An error instance may carry another code than its reason's (e.g. `ServiceUnavailable` with
 * 502 from the port proxy); the registry's code is the one @warren/api's `makeStatus` uses when none is given.
 * Reasons that reach users only on a condition (a runner `TerminalEnvironmentError`, recorded as
 * `conditions[].reason`) carry the code they would have as an error. Condition-only reasons that never come
 * from an error (`Cloned`, `Pulled`, `RunnerAssigned` ...) are another vocabulary and are not listed here.
 * Adding a reason: add it here, with the code of the error that carries it.
 */
export const REASONS = {
  // Generic API reasons (server, runner access server, port proxy, clients).
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  AlreadyExists: 409,
  Conflict: 409,
  Gone: 410,
  RequestEntityTooLarge: 413,
  UnsupportedMediaType: 415,
  Invalid: 422,
  TooManyRequests: 429,
  InternalError: 500,
  ServiceUnavailable: 503,
  Timeout: 504,

  // Environments and configuration (server, runner, CLI).
  InvalidGitUrl: 422,
  InvalidDevcontainerConfig: 422,
  InvalidRunnerConfig: 422,
  InvalidContainerConfig: 422,
  InvalidExecRequest: 422,
  InvalidEndpoint: 422,
  EnvironmentNotRunning: 409,
  EnvironmentNotScheduled: 409,
  EnvironmentFailed: 500,
  TerminalSessionNotFound: 404,
  SshUnavailable: 409,
  SshNotFound: 500,

  // Repository clone (runner linux/git.ts).
  RepositoryNotFound: 404,
  RepositoryAuthRequired: 401,
  RefNotFound: 404,
  RepositoryUnreachable: 503,
  GitCommandFailed: 500,

  // Images and registries (runner image/).
  InvalidImageReference: 422,
  InvalidImage: 422,
  ImageNotFound: 404,
  ImagePlatformNotFound: 422,
  RegistryUnauthorized: 401,
  RegistryUnreachable: 502,
  RegistryError: 502,
  DigestMismatch: 502,

  // Image builds (runner builder/).
  BuilderNotInstalled: 503,
  BuilderEngineFailed: 503,
  DevcontainerBuildFailed: 422,
  BaseImageNotFound: 422,

  // Container start (runner): terminal ones end on the `Running` condition.
  NoCommand: 422,
  UnknownContainerUser: 422,
  UnsupportedUserFile: 422,
  NotResolved: 500,
  ContainerNotFound: 404,
  RunnerFull: 507,

  // Host objects (runner linux/).
  CommandFailed: 500,
  CgroupFailed: 500,
  CgroupBusy: 409,
  NetworkSetupFailed: 500,
  MountBusy: 500,
  IdmapHelperUnavailable: 500,
  ExecAgentUnavailable: 503,
  ConnectionRefused: 502,
} as const satisfies Record<string, number>;

/** A reason from {@link REASONS}; every `WarrenError.reason` is one, so an unregistered reason is a type error. */
export type Reason = keyof typeof REASONS;
