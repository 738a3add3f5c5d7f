// The runner's controller: registration, heartbeat, and the environments of this runner reconciled through
// the controller kit of @warren/api (informer over the API, work queue, event predicate).
export { RunnerController, RUNNER_VERSION } from './runner-controller.js';
export type { RunnerControllerOptions } from './runner-controller.js';
export { environmentListerWatcher } from './environment-lister-watcher.js';
export { runnerMustAct, runnerRelevantFields } from './environment-predicates.js';
