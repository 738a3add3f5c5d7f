// Activity tracking on the runner: SSH sessions, terminal input, exec and proxied requests call `record`;
// the reporter tells the server at most once per interval per environment (issue 4, "Activity"), so the
// inactivity controller sees `status.lastActivityTime` move without a write per keystroke.
import { type Logger, silentLogger } from '@warren/base';

/** Default and maximum rate: one update per environment per 30 s (issue 4). */
export const DEFAULT_ACTIVITY_INTERVAL_MS = 30_000;

/** Timers the reporter uses; injected by tests. */
export interface ActivityClock {
  /** Milliseconds on a monotonic or wall clock. */
  now(): number;
  /** Runs `callback` after `delayMs`; returns a canceller. */
  setTimer(callback: () => void, delayMs: number): () => void;
}

const systemClock: ActivityClock = {
  now: () => performance.now(),
  setTimer: (callback, delayMs) => {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/** Options of {@link ActivityReporter}. */
export interface ActivityReporterOptions {
  /**
   * Tells the server about activity now, e.g. `(id) => client.keepalive(id)` (`POST
   * /api/v1/environments/{id}/keepalive`, which sets `status.lastActivityTime`; runner tokens may call it for
   * environments scheduled to them). A rejection is logged; the next window tries again unless the error
   * says the environment is gone (HTTP 403/404).
   */
  send(environmentId: string): Promise<unknown>;
  /** At most one `send` per environment per this many milliseconds (default {@link DEFAULT_ACTIVITY_INTERVAL_MS}). */
  intervalMs?: number;
  clock?: ActivityClock;
  logger?: Logger;
}

interface EnvironmentActivity {
  /** `clock.now()` of the last send. */
  lastSentAt?: number;
  /** Activity was recorded since the last send. */
  pending: boolean;
  cancelTimer?: () => void;
  inFlight?: Promise<void>;
}

/**
 * Batches activity per environment: the first `record` after a quiet interval is sent at once (leading
 * edge); records within the interval after a send are merged into one send when the interval ends
 * (trailing edge). So the server hears of activity within `intervalMs` and gets at most one update per
 * environment per `intervalMs`.
 */
export class ActivityReporter {
  private readonly environments = new Map<string, EnvironmentActivity>();
  private readonly intervalMs: number;
  private readonly clock: ActivityClock;
  private readonly logger: Logger;
  private closed = false;

  constructor(private readonly options: ActivityReporterOptions) {
    this.intervalMs = options.intervalMs ?? DEFAULT_ACTIVITY_INTERVAL_MS;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ component: 'activity' });
  }

  /**
   * Records activity in an environment now. Cheap; call it on every keystroke or request. Bound to the
   * instance, so it can be passed as a callback (`onActivity: reporter.record`).
   */
  readonly record = (environmentId: string): void => {
    if (this.closed) return;
    let entry = this.environments.get(environmentId);
    if (!entry) {
      entry = { pending: false };
      this.environments.set(environmentId, entry);
    }
    entry.pending = true;
    if (entry.cancelTimer || entry.inFlight) return; // a send is already due
    const sinceLast = entry.lastSentAt === undefined ? Infinity : this.clock.now() - entry.lastSentAt;
    if (sinceLast >= this.intervalMs) void this.sendNow(environmentId, entry);
    else this.schedule(environmentId, entry, this.intervalMs - sinceLast);
  };

  /** Sends every pending record now, ignoring the interval (shutdown). */
  async flush(): Promise<void> {
    const sends: Array<Promise<void>> = [];
    for (const [environmentId, entry] of this.environments) {
      if (entry.inFlight) sends.push(entry.inFlight);
      if (!entry.pending) continue;
      entry.cancelTimer?.();
      entry.cancelTimer = undefined;
      sends.push(this.sendNow(environmentId, entry));
    }
    await Promise.all(sends);
  }

  /** Sends what is pending, then stops: later records are ignored. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    for (const entry of this.environments.values()) entry.cancelTimer?.();
    this.environments.clear();
  }

  private schedule(environmentId: string, entry: EnvironmentActivity, delayMs: number): void {
    entry.cancelTimer = this.clock.setTimer(
      () => {
        entry.cancelTimer = undefined;
        if (entry.pending && !this.closed) void this.sendNow(environmentId, entry);
      },
      Math.max(0, delayMs),
    );
  }

  private sendNow(environmentId: string, entry: EnvironmentActivity): Promise<void> {
    entry.pending = false;
    entry.lastSentAt = this.clock.now();
    const sending = this.options.send(environmentId).then(
      () => this.logger.debug({ environmentId }, 'activity reported'),
      (error: unknown) => {
        const code = (error as { code?: unknown }).code;
        if (code === 404 || code === 403) {
          this.environments.delete(environmentId);
          entry.cancelTimer?.();
          return;
        }
        this.logger.warn({ environmentId, error: String(error) }, 'reporting activity failed; retrying in the next interval');
        entry.pending = true;
      },
    );
    entry.inFlight = sending.finally(() => {
      entry.inFlight = undefined;
      // Records that came in while sending are sent one interval after this send started.
      if (entry.pending && !entry.cancelTimer && !this.closed && this.environments.get(environmentId) === entry) {
        this.schedule(environmentId, entry, this.intervalMs - (this.clock.now() - (entry.lastSentAt ?? 0)));
      }
    });
    return entry.inFlight;
  }
}
