// The runner's activity folder: reports environment activity (SSH, terminal, exec, proxied requests) to the server.
export { ActivityReporter, DEFAULT_ACTIVITY_INTERVAL_MS } from './reporter.js';
export type { ActivityClock, ActivityReporterOptions } from './reporter.js';
