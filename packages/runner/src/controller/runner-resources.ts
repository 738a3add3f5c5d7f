// What a runner reports about its host in status.capacity and status.allocatable (docs/design/0010-requests-and-limits.md).
import type { RunnerResources } from '@warren/api';
import type { RunnerConfig } from '../config.js';

/**
 * The runner's capacity and allocatable amounts.
 * - `capacity`: the host, `cores × 1000` millicores and `memoryBytes` of RAM, and `maxEnvironments`.
 * - `allocatable`: capacity minus `config.reserved` (what Warren keeps for itself), never below 0; the
 *   environment count is not reserved. Overbooking is not applied here: the runner reports its ratios apart
 *   (status.overbooking) and the scheduler multiplies, so allocatable keeps the Kubernetes meaning.
 */
export function runnerResources(
  cores: number,
  memoryBytes: number,
  config: Pick<RunnerConfig, 'maxEnvironments' | 'reserved'>,
): { capacity: RunnerResources; allocatable: RunnerResources } {
  const capacity = { cpuMillicores: cores * 1000, memoryBytes, environments: config.maxEnvironments };
  const allocatable = {
    cpuMillicores: Math.max(0, capacity.cpuMillicores - config.reserved.cpuMillicores),
    memoryBytes: Math.max(0, capacity.memoryBytes - config.reserved.memoryBytes),
    environments: capacity.environments,
  };
  return { capacity, allocatable };
}
