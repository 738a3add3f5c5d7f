// Public API of the runner's environment control logic: the backend contract, the reconciler and the fake backend.
export { EnvironmentNotRunningError, TerminalEnvironmentError } from './backend.js';
export type {
  ContainerState,
  EnvironmentBackend,
  EnvironmentNetwork,
  ExecRequest,
  ExecSession,
  LifecycleOutcome,
  ObservedEnvironment,
  ResolvedEnvironment,
  StepContext,
} from './backend.js';
export { ConditionTypes, EnvironmentReconciler } from './reconciler.js';
export type { EnvironmentReconcilerOptions, StatusWriter } from './reconciler.js';
export { FakeBackend } from './fake-backend.js';
export type { FakeHostEnvironment } from './fake-backend.js';
