// The CPU burst controller's loop: every period it samples each environment's cgroup (usage, throttling, quota)
// and the host's busy time, runs decideCpuQuotas and writes the quotas that change. Level-triggered: each
// period starts from what the cgroups say, never from what it wrote last. docs/design/0015-cpu-burst-controller.md.
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import type { CgroupCpuSample } from '../linux/index.js';
import { type CpuDecision, type CpuDecisionOptions, type CpuSample, decideCpuQuotas } from './cpu-decision.js';

/** An environment the controller manages: its cgroup name and its class's CPU request and limit. */
export interface CpuTarget {
  /** Cgroup name (the environment id). */
  name: string;
  requestMillicores: number;
  limitMillicores: number;
}

/** What the controller needs from the cgroups (CgroupManager implements it). */
export interface CpuCgroups {
  /** @returns undefined when the group does not exist (yet, or any more). */
  cpuSample(name: string): Promise<CgroupCpuSample | undefined>;
  setCpuQuota(name: string, millicores: number): Promise<void>;
}

/** Options of {@link CpuBurstController}. */
export interface CpuBurstControllerOptions {
  cgroups: CpuCgroups;
  /** The environments to manage now (running on this runner, with their class's request and limit). */
  targets: () => Promise<CpuTarget[]>;
  /** CPUs shared by the environments, millicores; default online CPUs * 1000. */
  hostCpuMillicores?: number;
  /** CPU kept for Warren itself, millicores (the runner's reserve); default 0. */
  reservedMillicores?: number;
  /** Time between two decisions, ms (<= 1000; default 500). */
  periodMs?: number;
  /** Reads the host's busy CPU time, nanoseconds since boot; default /proc/stat. Undefined when unknown. */
  hostBusyNanoseconds?: () => Promise<number | undefined>;
  /** Monotonic clock, nanoseconds (tests). */
  now?: () => bigint;
  decision?: CpuDecisionOptions;
  logger?: Logger;
}

/** A decision with the time it was taken (ISO 8601), as kept for metrics. */
export interface TimedCpuDecision extends CpuDecision {
  time: string;
}

/** The last counters seen for one environment. */
interface Previous {
  at: bigint;
  sample: CgroupCpuSample;
}

/**
 * Runs {@link decideCpuQuotas} every `periodMs` over the cgroups of {@link CpuBurstControllerOptions.targets}.
 * Observable: each decision is logged at debug (`cpu quota decided`, with its reason), the latest one per
 * environment is kept ({@link latestDecisions}) and quota writes are counted ({@link quotaChanges}).
 * An environment's first period only records its counters (a decision needs two samples).
 * Errors of one environment (its group vanished mid-period) are logged and skip it; the loop never stops on them.
 */
export class CpuBurstController {
  private readonly options: CpuBurstControllerOptions;
  private readonly logger: Logger;
  private readonly previous = new Map<string, Previous>();
  private previousHost: { at: bigint; busy: number | undefined } | undefined;
  private readonly latest = new Map<string, TimedCpuDecision>();
  private changes = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(options: CpuBurstControllerOptions) {
    const periodMs = options.periodMs ?? 500;
    if (!(periodMs > 0 && periodMs <= 1000)) throw new RangeError(`periodMs must be in (0, 1000] (got ${periodMs})`);
    this.options = { ...options, periodMs };
    this.logger = (options.logger ?? silentLogger).child({ component: 'cpu-controller' });
  }

  /** Starts the loop (idempotent). The first period runs after `periodMs`. */
  start(): void {
    if (this.timer || this.closed) return;
    this.logger.info(
      { periodMs: this.options.periodMs, hostCpuMillicores: this.hostCpu(), reservedMillicores: this.options.reservedMillicores ?? 0 },
      'cpu burst controller started',
    );
    const schedule = () => {
      this.timer = setTimeout(() => {
        this.running = this.tick()
          .then(() => undefined)
          .catch((error: unknown) => this.logger.warn({ error: errorMessage(error) }, 'cpu controller period failed'))
          .finally(() => {
            this.running = undefined;
            if (!this.closed) schedule();
          });
      }, this.options.periodMs);
      this.timer.unref();
    };
    schedule();
  }

  /** Stops the loop and waits for a period in progress. Quotas stay as they are. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** The latest decision per environment still managed, sorted by name (copies). */
  latestDecisions(): TimedCpuDecision[] {
    return [...this.latest.values()].sort((a, b) => a.name.localeCompare(b.name)).map((decision) => ({ ...decision }));
  }

  /** Quota writes made since the controller was built (a counter). */
  quotaChanges(): number {
    return this.changes;
  }

  /**
   * One period: sample, decide, write. Public for tests, which drive periods themselves instead of waiting.
   * @returns the decisions taken (none for environments seen for the first time).
   * @throws what `targets()` throws; per-environment cgroup errors are logged, not thrown.
   */
  async tick(): Promise<CpuDecision[]> {
    const now = this.options.now ?? (() => process.hrtime.bigint());
    const targets = await this.options.targets();
    const busy = await (this.options.hostBusyNanoseconds ?? readHostBusyNanoseconds)().catch(() => undefined);
    const hostAt = now();
    const previousHost = this.previousHost;
    this.previousHost = { at: hostAt, busy };

    const samples: CpuSample[] = [];
    let elapsedSum = 0;
    for (const target of targets) {
      let sample: CgroupCpuSample | undefined;
      try {
        sample = await this.options.cgroups.cpuSample(target.name);
      } catch (error) {
        this.logger.warn({ name: target.name, error: errorMessage(error) }, 'cpu sample failed');
      }
      const at = now();
      const before = this.previous.get(target.name);
      if (!sample) {
        this.previous.delete(target.name);
        continue;
      }
      this.previous.set(target.name, { at, sample });
      // A counter that went back means a new group (the environment restarted): start over.
      if (!before || sample.usageNanoseconds < before.sample.usageNanoseconds || at <= before.at) continue;
      const elapsed = Number(at - before.at);
      elapsedSum += elapsed;
      samples.push({
        name: target.name,
        requestMillicores: target.requestMillicores,
        limitMillicores: target.limitMillicores,
        // An unlimited group (created without a class, or by hand) is brought within its limit.
        quotaMillicores: sample.quotaMillicores ?? Number.MAX_SAFE_INTEGER,
        usageNanoseconds: sample.usageNanoseconds - before.sample.usageNanoseconds,
        throttledPeriods: Math.max(0, sample.throttledPeriods - before.sample.throttledPeriods),
        throttledNanoseconds: Math.max(0, sample.throttledNanoseconds - before.sample.throttledNanoseconds),
      });
    }
    const names = new Set(targets.map((target) => target.name));
    for (const name of [...this.previous.keys()]) if (!names.has(name)) this.previous.delete(name);
    for (const name of [...this.latest.keys()]) if (!names.has(name)) this.latest.delete(name);
    if (samples.length === 0) return [];

    // Each environment's period is measured on its own; the host's from its own two readings.
    const elapsed = elapsedSum / samples.length;
    const hostElapsed = previousHost ? Number(hostAt - previousHost.at) : 0;
    const hostBusy =
      previousHost?.busy !== undefined && busy !== undefined && hostElapsed > 0
        ? ((busy - previousHost.busy) * elapsed) / hostElapsed
        : undefined;
    const decisions = decideCpuQuotas(
      {
        cpuMillicores: this.hostCpu(),
        reservedMillicores: this.options.reservedMillicores ?? 0,
        elapsedNanoseconds: elapsed,
        ...(hostBusy === undefined ? {} : { busyNanoseconds: hostBusy }),
      },
      samples,
      this.options.decision,
    );
    const time = new Date().toISOString();
    for (const decision of decisions) {
      if (decision.changed) {
        try {
          await this.options.cgroups.setCpuQuota(decision.name, decision.quotaMillicores);
          this.changes += 1;
        } catch (error) {
          this.logger.warn({ name: decision.name, error: errorMessage(error) }, 'cpu quota not written');
          this.previous.delete(decision.name);
          continue;
        }
      }
      this.latest.set(decision.name, { ...decision, time });
      this.logger.debug(
        {
          name: decision.name,
          reason: decision.reason,
          quotaMillicores: decision.quotaMillicores,
          previousQuotaMillicores: decision.previousQuotaMillicores,
          usageMillicores: decision.usageMillicores,
          throttledRatio: decision.throttledRatio,
          changed: decision.changed,
          message: decision.message,
        },
        'cpu quota decided',
      );
    }
    return decisions;
  }

  private hostCpu(): number {
    return this.options.hostCpuMillicores ?? availableParallelism() * 1000;
  }
}

/**
 * The host's busy CPU time since boot, nanoseconds: the `cpu` line of /proc/stat (proc(5)) minus idle and
 * iowait, in USER_HZ ticks (100 per second on Linux for /proc/stat, sysconf(_SC_CLK_TCK)).
 * @returns undefined when /proc/stat cannot be read or parsed.
 */
export async function readHostBusyNanoseconds(path = '/proc/stat'): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStatBusy(text);
}

/**
 * Parses the aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal (guest time is
 * already inside user and nice, so it is not added again).
 * @returns busy nanoseconds (all but idle and iowait), or undefined when the line is missing.
 */
export function parseProcStatBusy(text: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith('cpu '));
  if (!line) return undefined;
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 4 || fields.some((value) => !Number.isFinite(value))) return undefined;
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  const ticksPerSecond = 100;
  return ((user + nice + system + irq + softirq + steal) * 1_000_000_000) / ticksPerSecond;
}
