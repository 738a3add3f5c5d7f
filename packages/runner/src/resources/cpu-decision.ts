// The CPU burst controller's decision, as a pure function: from one period's cgroup samples (usage and
// throttling per environment, the host's busy time) to each environment's next CFS quota, with its reason.
// docs/design/0015-cpu-burst-controller.md explains the rules; cpu-controller.ts runs them every period.

/** What the controller knows about one environment for one period. CPU amounts are millicores (1000 = one CPU). */
export interface CpuSample {
  /** The environment's cgroup name (its id). */
  name: string;
  /** The guarantee (class `requests.cpuMillicores`): the quota never goes below it, and it is the weight. */
  requestMillicores: number;
  /** The burst ceiling (class `cpuMillicores`): the quota never goes above it. */
  limitMillicores: number;
  /** The quota in force during the period. */
  quotaMillicores: number;
  /** CPU time the environment used during the period, nanoseconds (cpuacct.usage / cpu.stat usage_usec delta). */
  usageNanoseconds: number;
  /** CFS periods in which it was throttled during the period (cpu.stat nr_throttled delta). */
  throttledPeriods: number;
  /** Time it spent throttled during the period, nanoseconds (throttled_time / throttled_usec delta). */
  throttledNanoseconds: number;
}

/** Host-wide inputs of one decision. */
export interface CpuHost {
  /** CPUs the environments may share, millicores: online CPUs * 1000. */
  cpuMillicores: number;
  /** CPU kept for Warren itself (server, runner, their tools), millicores; never given to environments. */
  reservedMillicores: number;
  /** Length of the sampled period, nanoseconds (> 0). */
  elapsedNanoseconds: number;
  /**
   * CPU time the whole host was busy during the period, nanoseconds (/proc/stat, all CPUs, not idle or iowait);
   * absent when unknown. What is busy outside the environments beyond `reservedMillicores` is not shared out.
   */
  busyNanoseconds?: number;
}

/**
 * Why a quota is what it is:
 * - `burst`: the environment needed more (throttled, or used >= 90 % of its quota) and got idle CPU;
 * - `contention`: it needs more, but others need the CPU too: it holds its request plus a share of what is left,
 *   proportional to requests (at worst exactly its request);
 * - `headroom`: it is not short of CPU; its quota is what it would get if it burst now (its share of the CPU the
 *   busy environments leave), so a burst starts at once instead of one period later;
 * - `limit`: it runs at its burst ceiling (nothing to give);
 * - `unchanged`: the new quota is within the dead band of the old one, which stays (no cgroup write).
 */
export type CpuDecisionReason = 'burst' | 'contention' | 'headroom' | 'limit' | 'unchanged';

/** The controller's decision for one environment. */
export interface CpuDecision {
  name: string;
  /** Quota to set, millicores, in [request, limit]. Equal to `previousQuotaMillicores` when `changed` is false. */
  quotaMillicores: number;
  previousQuotaMillicores: number;
  /** Whether the quota must be written. */
  changed: boolean;
  reason: CpuDecisionReason;
  /** Whether the environment was short of CPU in the period (throttled, or used >= 90 % of its quota). */
  hungry: boolean;
  /** CPU it used during the period, millicores (average). */
  usageMillicores: number;
  /** Time spent throttled per wall time during the period (0 = never; can exceed 1 with several threads). */
  throttledRatio: number;
  /** The reason in words, for logs and `latestDecisions()`. */
  message: string;
}

/** Tunables of {@link decideCpuQuotas}; the defaults are those of the runner. */
export interface CpuDecisionOptions {
  /** Used/quota at or above which an environment counts as short of CPU (default 0.9). */
  hungryUsageRatio?: number;
  /** Headroom over its usage left to an environment that is not short of CPU, as a factor (default 1.25). */
  usageHeadroom?: number;
  /** Changes smaller than this many millicores are not written (default 20). */
  deadBandMillicores?: number;
  /** Changes smaller than this fraction of the old quota are not written (default 0.05). */
  deadBandRatio?: number;
  /** Lowest quota the kernel accepts, millicores (default 10: 1 ms per 100 ms period). */
  minimumMillicores?: number;
}

/**
 * Decides the next CFS quota of every environment (weighted max-min fairness, "water-filling"):
 * 1. The capacity is the host's CPUs minus what Warren reserves (or minus what the host spends outside the
 *    environments, when that is more).
 * 2. An environment that was throttled or used >= 90 % of its quota is *hungry*: it demands its limit. Any
 *    other demands its usage plus 25 % headroom.
 * 3. The capacity is shared by weights proportional to requests, each capped at its demand; what a capped one
 *    leaves goes to the others. Quota = max(request, share), at most the limit.
 * 4. Not-hungry environments get as quota what they would get if they turned hungry now (step 3 with their
 *    demand at the limit), so a burst starts without waiting a period; hungry ones get their share.
 * Sum of quotas may exceed the capacity (a quota is a ceiling, not a reservation; cpu.shares/cpu.weight, set
 * from requests, decide who runs under contention). Pure: same inputs, same output.
 * @returns one decision per sample, in the samples' order.
 */
export function decideCpuQuotas(host: CpuHost, samples: readonly CpuSample[], options: CpuDecisionOptions = {}): CpuDecision[] {
  const hungryRatio = options.hungryUsageRatio ?? 0.9;
  const headroom = options.usageHeadroom ?? 1.25;
  const deadBand = options.deadBandMillicores ?? 20;
  const deadBandRatio = options.deadBandRatio ?? 0.05;
  const minimum = options.minimumMillicores ?? 10;
  const elapsed = Math.max(1, host.elapsedNanoseconds);
  const perSecond = (nanoseconds: number) => (Math.max(0, nanoseconds) / elapsed) * 1000;

  const entries = samples.map((sample) => {
    const limit = Math.max(minimum, Math.round(sample.limitMillicores));
    const request = Math.min(limit, Math.max(minimum, Math.round(sample.requestMillicores)));
    const usage = perSecond(sample.usageNanoseconds);
    const throttled = sample.throttledPeriods > 0 || sample.throttledNanoseconds > 0;
    const hungry = throttled || usage >= hungryRatio * sample.quotaMillicores;
    const demand = hungry ? limit : Math.min(limit, usage * headroom);
    return { sample, limit, request, usage, hungry, demand };
  });

  const environmentsBusy = entries.reduce((sum, entry) => sum + entry.usage, 0);
  const outside = host.busyNanoseconds === undefined ? 0 : Math.max(0, perSecond(host.busyNanoseconds) - environmentsBusy);
  const capacity = Math.max(0, host.cpuMillicores - Math.max(host.reservedMillicores, outside));
  const weights = entries.map((entry) => entry.request);
  const shares = waterFill(
    capacity,
    weights,
    entries.map((entry) => entry.demand),
  );

  return entries.map((entry, index) => {
    const { sample, limit, request, usage, hungry } = entry;
    // What it would get if it burst now, the others' demands unchanged.
    const share = hungry
      ? shares[index]!
      : waterFill(
          capacity,
          weights,
          entries.map((other, otherIndex) => (otherIndex === index ? limit : other.demand)),
        )[index]!;
    const target = Math.min(limit, Math.max(request, Math.floor(share)));
    let reason: CpuDecisionReason;
    if (target >= limit) reason = 'limit';
    else if (!hungry) reason = 'headroom';
    else if (target > sample.quotaMillicores) reason = 'burst';
    else reason = 'contention';
    const previous = sample.quotaMillicores;
    const small = Math.abs(target - previous) < Math.max(deadBand, deadBandRatio * previous);
    // A quota outside [request, limit] (a class changed, a fresh container) is always corrected.
    const outOfRange = previous < request || previous > limit;
    const changed = target !== previous && (outOfRange || !small);
    const throttledRatio = perSecond(sample.throttledNanoseconds) / 1000;
    const decision: CpuDecision = {
      name: sample.name,
      quotaMillicores: changed ? target : previous,
      previousQuotaMillicores: previous,
      changed,
      reason: changed || target === previous ? reason : 'unchanged',
      hungry,
      usageMillicores: Math.round(usage),
      throttledRatio: Math.round(throttledRatio * 1000) / 1000,
      message: '',
    };
    decision.message = describe(decision, { request, limit, capacity: Math.round(capacity), target });
    return decision;
  });
}

function describe(decision: CpuDecision, context: { request: number; limit: number; capacity: number; target: number }): string {
  const usage = `used ${decision.usageMillicores}m of ${decision.previousQuotaMillicores}m`;
  const range = `request ${context.request}m, limit ${context.limit}m, shared capacity ${context.capacity}m`;
  switch (decision.reason) {
    case 'burst':
      return `${usage}, throttled ${decision.throttledRatio}: raised to ${decision.quotaMillicores}m from idle CPU (${range})`;
    case 'contention':
      return `${usage}, short of CPU while others are too: ${decision.quotaMillicores}m, its share by requests (${range})`;
    case 'headroom':
      return `${usage}, not short of CPU: ${decision.quotaMillicores}m, what it would get if it burst now (${range})`;
    case 'limit':
      return `${usage}: at its limit ${decision.quotaMillicores}m (${range})`;
    case 'unchanged':
      return `${usage}: target ${context.target}m is within the dead band; quota stays (${range})`;
  }
}

/**
 * Weighted max-min fair division of `capacity` ("water-filling"): each party gets capacity * weight / total of
 * the weights still in play, capped at its demand; what capped parties leave is divided again among the rest.
 * A weight of 0 counts as 1 (every environment takes part).
 * @returns the share of each party, same order; their sum is min(capacity, sum of demands).
 */
export function waterFill(capacity: number, weights: readonly number[], demands: readonly number[]): number[] {
  const shares = demands.map(() => 0);
  let open = demands.map((_, index) => index).filter((index) => demands[index]! > 0);
  let left = Math.max(0, capacity);
  while (open.length > 0 && left > 1e-9) {
    const total = open.reduce((sum, index) => sum + Math.max(1, weights[index]!), 0);
    const capped: number[] = [];
    for (const index of open) {
      const offer = (left * Math.max(1, weights[index]!)) / total;
      if (shares[index]! + offer >= demands[index]!) capped.push(index);
    }
    if (capped.length === 0) {
      for (const index of open) shares[index] = shares[index]! + (left * Math.max(1, weights[index]!)) / total;
      left = 0;
      break;
    }
    for (const index of capped) {
      left -= demands[index]! - shares[index]!;
      shares[index] = demands[index]!;
    }
    open = open.filter((index) => !capped.includes(index));
  }
  return shares;
}
