// Parsers of the cgroup usage files that carry more than one number (IO per device, CFS quota and period),
// shared by the v1 and v2 drivers' stats.

/** IO done by a group, summed over every block device; a field is absent when the file does not exist. */
export interface IoTotals {
  readBytes?: number;
  writeBytes?: number;
  readOperations?: number;
  writeOperations?: number;
}

/**
 * Sums the `Read` and `Write` lines of a v1 blkio file (`blkio.throttle.io_service_bytes` or
 * `blkio.throttle.io_serviced`: `<major>:<minor> <Read|Write|Sync|Async|Discard|Total> <n>` per line, then
 * `Total <n>`; Documentation/admin-guide/cgroup-v1/blkio-controller.rst).
 * @returns undefined for an absent file; zeros for an empty one (no IO yet).
 */
export function v1BlkioTotals(text: string | undefined): { read: number; write: number } | undefined {
  if (text === undefined) return undefined;
  const totals = { read: 0, write: 0 };
  for (const line of text.split('\n')) {
    const [device, operation, value] = line.trim().split(/\s+/);
    if (!device?.includes(':') || value === undefined || !/^\d+$/.test(value)) continue;
    if (operation === 'Read') totals.read += Number(value);
    else if (operation === 'Write') totals.write += Number(value);
  }
  return totals;
}

/**
 * Sums v2 `io.stat` over devices (`<major>:<minor> rbytes=<n> wbytes=<n> rios=<n> wios=<n> dbytes=<n> dios=<n>`;
 * Documentation/admin-guide/cgroup-v2.rst "IO Interface Files").
 * @returns {} for an absent file (io controller not enabled); zeros for an empty one.
 */
export function v2IoStatTotals(text: string | undefined): IoTotals {
  if (text === undefined) return {};
  const totals = { readBytes: 0, writeBytes: 0, readOperations: 0, writeOperations: 0 };
  const fields = { rbytes: 'readBytes', wbytes: 'writeBytes', rios: 'readOperations', wios: 'writeOperations' } as const;
  for (const line of text.split('\n')) {
    for (const pair of line.trim().split(/\s+/).slice(1)) {
      const [key, value] = pair.split('=');
      if (key && key in fields && value !== undefined && /^\d+$/.test(value)) totals[fields[key as keyof typeof fields]] += Number(value);
    }
  }
  return totals;
}

/**
 * The CPU limit in millicores of a CFS quota and period in microseconds (quota / period * 1000, rounded).
 * @returns undefined when unlimited (quota negative, `max`, or unreadable).
 */
export function millicoresOfQuota(quota: number | string | undefined, period: number | undefined): number | undefined {
  const value = typeof quota === 'string' ? (/^\d+$/.test(quota) ? Number(quota) : undefined) : quota;
  if (value === undefined || value < 0 || !period) return undefined;
  return Math.round((value * 1000) / period);
}
