// Result formatting for the CLI: `--output table|json|yaml`. Results go to stdout, logs to stderr.
import { stringify } from 'yaml';
import { classRequests, type Environment, type EnvironmentClass, type Runner, type Resource } from '@warren/api';

/** Output formats every listing/getting command accepts. */
export type OutputFormat = 'table' | 'json' | 'yaml';

/** One table column: header and how to read the cell from an object. */
export interface Column<T> {
  header: string;
  value: (item: T) => string;
}

/** Renders rows as a left-aligned, space-padded table (kubectl style). */
export function renderTable<T>(items: readonly T[], columns: readonly Column<T>[]): string {
  const rows = [columns.map((column) => column.header), ...items.map((item) => columns.map((column) => column.value(item)))];
  const widths = columns.map((_, index) => Math.max(...rows.map((row) => row[index]!.length)));
  return (
    rows
      .map((row) =>
        row
          .map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index]!)))
          .join('   ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** Renders a value (one object or a list) in the requested format. */
export function render<T>(value: T | T[], format: OutputFormat, columns: readonly Column<T>[]): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(value, null, 2)}\n`;
    case 'yaml':
      return stringify(value);
    case 'table':
      return renderTable(Array.isArray(value) ? value : [value], columns);
  }
}

/** "3m", "2h", "5d": age of an RFC 3339 time relative to now. */
export function age(time: string | undefined, now = Date.now()): string {
  if (!time) return '-';
  const seconds = Math.max(0, Math.round((now - Date.parse(time)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

const name = <T extends Resource>(item: T) => item.metadata.name;

/** Table columns for environments. */
export const environmentColumns: Column<Environment>[] = [
  { header: 'NAME', value: name },
  { header: 'ID', value: (item) => item.metadata.id },
  { header: 'PHASE', value: (item) => item.status.phase },
  { header: 'DESIRED', value: (item) => item.spec.desiredPhase },
  { header: 'REPOSITORY', value: (item) => item.spec.source.git.url + (item.spec.source.git.ref ? `#${item.spec.source.git.ref}` : '') },
  { header: 'CLASS', value: (item) => item.spec.className },
  { header: 'AGE', value: (item) => age(item.metadata.createdTime) },
];

/** Table columns for runners. */
export const runnerColumns: Column<Runner>[] = [
  { header: 'NAME', value: name },
  { header: 'ID', value: (item) => item.metadata.id },
  { header: 'PHASE', value: (item) => item.status.phase },
  { header: 'HEARTBEAT', value: (item) => age(item.status.lastHeartbeatTime) },
  { header: 'VERSION', value: (item) => item.status.version ?? '-' },
  { header: 'ACCESS', value: (item) => item.status.endpoints.access ?? '-' },
];

/** Table columns for environment classes. */
export const classColumns: Column<EnvironmentClass>[] = [
  { header: 'NAME', value: name },
  { header: 'CPU REQUEST/LIMIT', value: (item) => `${classRequests(item.spec).cpuMillicores}m/${item.spec.cpuMillicores}m` },
  {
    header: 'MEMORY REQUEST/LIMIT',
    value: (item) => `${formatBytes(classRequests(item.spec).memoryBytes)}/${formatBytes(item.spec.memoryBytes)}`,
  },
  { header: 'SWAP', value: (item) => formatBytes(item.spec.swapBytes) },
  { header: 'DISK', value: (item) => (item.spec.diskBytes ? formatBytes(item.spec.diskBytes) : '-') },
  { header: 'PIDS', value: (item) => String(item.spec.pids) },
  { header: 'IO', value: (item) => formatIo(item.spec.io) },
];

/** IO limits as `read 100MiB/s 500iops, write 50MiB/s`; `-` for none (absent or 0 means no limit). */
export function formatIo(io: EnvironmentClass['spec']['io']): string {
  const side = (label: string, bytes: number | undefined, iops: number | undefined): string[] => {
    const parts = [...(bytes ? [`${formatBytes(bytes)}/s`] : []), ...(iops ? [`${iops}iops`] : [])];
    return parts.length > 0 ? [`${label} ${parts.join(' ')}`] : [];
  };
  const sides = [...side('read', io?.readBytesPerSecond, io?.readIops), ...side('write', io?.writeBytesPerSecond, io?.writeIops)];
  return sides.length > 0 ? sides.join(', ') : '-';
}

/** Formats a byte count with binary units (`1.5 GiB`). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Parses a size such as `4Gi`, `512Mi`, `1G`, `1024` into bytes.
 * @returns the byte count, or undefined when the text is not a size.
 */
export function parseBytes(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?i?B?$/i.exec(text.trim());
  if (!match) return undefined;
  const factors: Record<string, number> = { k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3, ti: 1024 ** 4 };
  const factor = match[2] ? factors[match[2].toLowerCase()]! : 1;
  return Math.round(Number(match[1]) * factor);
}
