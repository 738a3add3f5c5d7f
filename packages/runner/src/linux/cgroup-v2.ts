// The cgroup v2 driver of CgroupManager (Documentation/admin-guide/cgroup-v2.rst): one unified
// directory per group, controllers enabled down the tree, cpu.max, memory.max/swap.max, pids.max, usage.
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type CgroupLayout, assignStat, exists, keyedValues, readOptional, singleValue } from './cgroup-fs.js';
import { applyV2IoLimits } from './cgroup-io.js';
import { CPU_PERIOD_MICROSECONDS, type CgroupLimits, type CgroupStats, cpuQuotaMicroseconds, cpuWeightOf } from './cgroup-limits.js';
import { millicoresOfQuota, v2IoStatTotals } from './cgroup-stats.js';

/** v2 controllers enabled in `cgroup.subtree_control` of the parents (Documentation/admin-guide/cgroup-v2.rst). */
export const V2_CONTROLLERS = ['cpu', 'memory', 'pids', 'io'] as const;

/**
 * Enables the wanted controllers in `dir`'s subtree_control.
 * @param inherited what the parent's subtree_control holds, used when `dir/cgroup.controllers` cannot be
 *   read (a child's cgroup.controllers is its parent's subtree_control).
 * @returns the controllers enabled in `dir`'s subtree_control afterwards.
 */
async function enableV2Controllers(dir: string, inherited: readonly string[] = []): Promise<string[]> {
  const tokens = (text: string | undefined): string[] =>
    (text ?? '').split(/\s+/).flatMap((token) => (token ? [token.replace(/^\+/, '')] : []));
  const listed = await readOptional(join(dir, 'cgroup.controllers'));
  const allowed = listed === undefined ? inherited : tokens(listed);
  const enabled = tokens(await readOptional(join(dir, 'cgroup.subtree_control')));
  const wanted = V2_CONTROLLERS.filter((controller) => allowed.includes(controller) && !enabled.includes(controller));
  if (wanted.length > 0) {
    await writeFile(join(dir, 'cgroup.subtree_control'), `${wanted.map((controller) => `+${controller}`).join(' ')}\n`);
  }
  return [...enabled, ...wanted];
}

/**
 * Creates `<root>/<parent>/<name>` (idempotent) after enabling `+cpu +memory +pids +io` in
 * `cgroup.subtree_control` of the root and of `/<parent>` ("Enabling and Disabling").
 * @throws the filesystem error.
 */
export async function createV2(layout: CgroupLayout, name: string): Promise<void> {
  const atRoot = await enableV2Controllers(layout.root);
  await mkdir(join(layout.root, layout.parent), { recursive: true });
  await enableV2Controllers(join(layout.root, layout.parent), atRoot);
  await mkdir(join(layout.root, layout.parent, name), { recursive: true });
}

/**
 * Writes all limits of the group at `dir`; absent fields become unlimited: `cpu.max` =
 * "<quota|max> 100000", `cpu.weight` from the CPU request (default 100), `memory.max`, `memory.low` = the memory
 * request (default 0; the parent's becomes the sum of its children's), `memory.swap.max` = swap (v2 limits swap alone, not memory +
 * swap; written only with swap accounting), `pids.max`, `io.max` per device (cgroup-io.ts; without the io
 * controller that is logged and skipped).
 * @throws the filesystem error (ENOENT when `dir` does not exist).
 */
export async function updateV2(layout: CgroupLayout, dir: string, limits: CgroupLimits): Promise<void> {
  await stat(dir); // fail with ENOENT rather than create stray files on a fake root
  const quota = limits.cpuMillicores === undefined ? 'max' : String(cpuQuotaMicroseconds(limits.cpuMillicores));
  await writeFile(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_MICROSECONDS}\n`);
  await writeFile(
    join(dir, 'cpu.weight'),
    `${limits.cpuRequestMillicores === undefined ? 100 : cpuWeightOf(limits.cpuRequestMillicores)}\n`,
  );
  await writeFile(join(dir, 'memory.max'), `${limits.memoryBytes ?? 'max'}\n`);
  await writeFile(join(dir, 'memory.low'), `${limits.memoryRequestBytes ?? 0}\n`);
  const swapAccounting = layout.swapAccounting ?? (await exists(join(dir, 'memory.swap.max')));
  if (swapAccounting) {
    const swap = limits.memoryBytes === undefined ? 'max' : String(limits.swapBytes ?? 0);
    await writeFile(join(dir, 'memory.swap.max'), `${swap}\n`);
  } else if (limits.swapBytes) {
    layout.logger.warn({ dir }, 'swap accounting is off; swapBytes ignored');
  }
  await writeFile(join(dir, 'pids.max'), `${limits.pids ?? 'max'}\n`);
  await applyV2IoLimits(dir, limits.io ?? [], layout.logger);
  await syncParentMemoryLow(dirname(dir));
}

/** Per parent directory, the last {@link syncParentMemoryLow} in flight, so sums are written in order. */
const parentLowWrites = new Map<string, Promise<void>>();

/**
 * Sets the parent's `memory.low` to the sum of its children's. A child's protection is bounded by its
 * ancestors' (cgroup-v2.rst "memory.low": "the effective low limit is limited by low limits of all ancestor
 * cgroups"), so without this a `memory.low` under `/<parent>` protects nothing; "max" would instead hand the
 * unclaimed protection to every child on hosts mounted with `memory_recursiveprot`. Recomputed at every update
 * (a removed group's share goes at the next one); serialized per parent so a stale sum never lands last.
 * Skipped where the parent has no `memory.low` (no memory controller).
 */
function syncParentMemoryLow(parentDir: string): Promise<void> {
  const previous = parentLowWrites.get(parentDir) ?? Promise.resolve();
  const next = previous.then(async () => {
    if (!(await exists(join(parentDir, 'memory.low')))) return;
    let sum = 0;
    for (const entry of await readdir(parentDir, { withFileTypes: true })) {
      if (entry.isDirectory()) sum += singleValue(await readOptional(join(parentDir, entry.name, 'memory.low'))) ?? 0;
    }
    await writeFile(join(parentDir, 'memory.low'), `${sum}\n`);
  });
  const settled = next.catch(() => undefined);
  parentLowWrites.set(parentDir, settled);
  void settled.then(() => {
    if (parentLowWrites.get(parentDir) === settled) parentLowWrites.delete(parentDir);
  });
  return next;
}

/**
 * Reads the usage counters and limits of the group at `dir` (cpu.stat, cpu.max, memory.current/peak/events/max,
 * memory.swap.current/max, io.stat, pids.current/max).
 * @throws an ENOENT error when `dir` does not exist.
 */
export async function statsV2(dir: string): Promise<CgroupStats> {
  await stat(dir);
  const cpuStat = keyedValues(await readOptional(join(dir, 'cpu.stat')));
  const events = keyedValues(await readOptional(join(dir, 'memory.events')));
  const micro = (value: number | undefined): number | undefined => (value === undefined ? undefined : value * 1000);
  const stats: CgroupStats = {};
  assignStat(stats, 'cpuUsageNanoseconds', micro(cpuStat.get('usage_usec')));
  assignStat(stats, 'cpuThrottledPeriods', cpuStat.get('nr_throttled'));
  assignStat(stats, 'cpuThrottledNanoseconds', micro(cpuStat.get('throttled_usec')));
  assignStat(stats, 'memoryUsageBytes', singleValue(await readOptional(join(dir, 'memory.current'))));
  assignStat(stats, 'memoryPeakBytes', singleValue(await readOptional(join(dir, 'memory.peak'))));
  assignStat(stats, 'oomKills', events.get('oom_kill'));
  assignStat(stats, 'pids', singleValue(await readOptional(join(dir, 'pids.current'))));
  assignStat(stats, 'pidsLimit', singleValue(await readOptional(join(dir, 'pids.max'))));
  const [quota, period] = ((await readOptional(join(dir, 'cpu.max'))) ?? '').trim().split(/\s+/);
  assignStat(stats, 'cpuLimitMillicores', millicoresOfQuota(quota, singleValue(period)));
  assignStat(stats, 'memoryLimitBytes', singleValue(await readOptional(join(dir, 'memory.max'))));
  assignStat(stats, 'swapUsageBytes', singleValue(await readOptional(join(dir, 'memory.swap.current'))));
  assignStat(stats, 'swapLimitBytes', singleValue(await readOptional(join(dir, 'memory.swap.max'))));
  const io = v2IoStatTotals(await readOptional(join(dir, 'io.stat')));
  assignStat(stats, 'ioReadBytes', io.readBytes);
  assignStat(stats, 'ioWriteBytes', io.writeBytes);
  assignStat(stats, 'ioReadOperations', io.readOperations);
  assignStat(stats, 'ioWriteOperations', io.writeOperations);
  return stats;
}
