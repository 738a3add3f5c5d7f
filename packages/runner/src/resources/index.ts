// Public API of resources/: the CPU burst controller (docs/design/0015-cpu-burst-controller.md) for runner.ts
// and the runner's metrics.
export { CpuBurstController, parseProcStatBusy, readHostBusyNanoseconds } from './cpu-controller.js';
export type { CpuBurstControllerOptions, CpuCgroups, CpuTarget, TimedCpuDecision } from './cpu-controller.js';
export { decideCpuQuotas, waterFill } from './cpu-decision.js';
export type { CpuDecision, CpuDecisionOptions, CpuDecisionReason, CpuHost, CpuSample } from './cpu-decision.js';
export { classCpuTargets } from './targets.js';
export type { ClassCpuTargetsOptions } from './targets.js';
