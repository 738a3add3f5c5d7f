// @warren/runner: the host daemon (controller, environment reconciler, Linux backend, access API) and the
// access client helpers the CLI uses.
export { exec, spawnLogged, ExecError } from './linux/index.js';
export type { ExecOptions, ExecResult } from './linux/index.js';
export { startRunner } from './runner.js';
export type { StartRunnerOptions, RunningRunner } from './runner.js';
export { DEFAULT_IMAGE, RunnerConfigSchema, loadRunnerConfig, resolveRunnerConfig } from './config.js';
export type { RunnerConfig, RunnerConfigInput } from './config.js';
export { RunnerController, RUNNER_VERSION } from './controller/index.js';
export type { RunnerControllerOptions } from './controller/index.js';
export { EnvironmentReconciler, ConditionTypes } from './environment/index.js';
export type { EnvironmentReconcilerOptions, StatusWriter } from './environment/index.js';
export { TerminalEnvironmentError, EnvironmentNotRunningError } from './environment/index.js';
export type {
  EnvironmentBackend,
  ObservedEnvironment,
  ResolvedEnvironment,
  StepContext,
  LifecycleOutcome,
  ExecRequest,
  ExecSession,
  ContainerState,
} from './environment/index.js';
export { LinuxBackend, KEEP_ALIVE_COMMAND } from './linux-backend/index.js';
export type { LinuxBackendOptions } from './linux-backend/index.js';
// A host that embeds the runner (tests: e2e/harness) passes its own runtime state root and cgroup parent.
export { CgroupManager, RuncRuntime } from './linux/index.js';
export { FakeBackend } from './environment/index.js';
export { startAccessServer } from './access/index.js';
export type { AccessServer, AccessServerOptions } from './access/index.js';
export { createAccessVerifier, AccessDeniedError } from './access/index.js';
export type { AccessVerifier, AccessClaims } from './access/index.js';
export { execInEnvironment, followLogs } from './access/index.js';
export type { ExecInEnvironmentOptions, FollowLogsOptions } from './access/index.js';
export { TerminalSessions, TerminalSessionNotFoundError, ScrollbackBuffer, LOGIN_SHELL_ARGV } from './access/index.js';
export { openTerminal } from './access/index.js';
export type { OpenTerminalOptions, TerminalConnection, TerminalEnd } from './access/index.js';
export { ActivityReporter, DEFAULT_ACTIVITY_INTERVAL_MS } from './activity/index.js';
export type { ActivityReporterOptions, ActivityClock } from './activity/index.js';
export { listImages, pruneImages, imagesInUse } from './image-admin.js';
export type { ImagePruneReport } from './image-admin.js';
