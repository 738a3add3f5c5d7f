// Server controllers: scheduler, runner liveness, inactivity timeout, garbage collection, and the
// lease-holding manager that runs them on the controller kit of @warren/api (informers fed from the store).
export { ControllerManager, runControllers } from './manager.js';
export type { ControllerManagerOptions, ControllerOptions } from './manager.js';
export { chooseRunner, SchedulerController, SCHEDULED } from './scheduler.js';
export type { Placement } from './scheduler.js';
export { RunnerLivenessController, RUNNER_READY } from './runner-liveness.js';
export { InactivityController, INACTIVITY_CONDITION } from './inactivity.js';
export { GarbageCollector } from './garbage-collector.js';
export { storeListerWatcher } from './store-lister-watcher.js';
export type { Controller, ControllerContext } from './controller.js';
export { systemClock } from './clock.js';
export type { Clock } from './clock.js';
