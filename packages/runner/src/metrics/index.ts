// The runner's metrics folder: the Prometheus registry (per-environment usage read at scrape time, reconcile
// queue and durations, process metrics) that the access API serves at /metrics.
export { ENVIRONMENT_LABELS, RunnerMetrics } from './runner-metrics.js';
export type { MetricsPage, RunnerMetricsOptions } from './runner-metrics.js';
