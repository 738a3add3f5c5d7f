// Server controllers: scheduler, runner liveness, inactivity timeout, garbage collection, and the
// lease-holding manager that runs them.
export { ControllerManager, runControllers } from './manager.js';
export type { ControllerManagerOptions, ControllerOptions } from './manager.js';
export { chooseRunner, SchedulerController, SCHEDULED } from './scheduler.js';
export type { Placement } from './scheduler.js';
export { RunnerLivenessController, RUNNER_READY } from './runner-liveness.js';
export { InactivityController, INACTIVITY_CONDITION } from './inactivity.js';
export { GarbageCollector } from './garbage-collector.js';
export { Informer } from './informer.js';
export type { ChangeListener } from './informer.js';
export { WorkQueue } from './work-queue.js';
export type { Controller, ControllerContext } from './controller.js';
export { systemClock } from './clock.js';
export type { Clock } from './clock.js';
