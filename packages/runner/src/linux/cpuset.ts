// Which CPUs an environment may run on, so that `nproc` (sched_getaffinity(2)), lxcfs's /proc/cpuinfo and
// /sys/devices/system/cpu/online all show ceil(limit / 1000) CPUs. docs/design/0013-honest-proc-views.md.
import { readFile } from 'node:fs/promises';

/**
 * Parses a kernel CPU list (cpuset(7) "List format"), e.g. `0-3,8,10-11`.
 * @returns the CPU numbers, ascending, without duplicates; `[]` for an empty or malformed list.
 */
export function parseCpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) return [];
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) return [];
    for (let cpu = first; cpu <= last; cpu++) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** Formats CPU numbers as a kernel CPU list (ranges for runs), e.g. `[0,1,2,5]` → `0-2,5`. */
export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let index = 0; index < sorted.length;) {
    let end = index;
    while (end + 1 < sorted.length && sorted[end + 1] === sorted[end]! + 1) end++;
    parts.push(end === index ? `${sorted[index]}` : `${sorted[index]}-${sorted[end]}`);
    index = end + 1;
  }
  return parts.join(',');
}

/**
 * The cpuset (`linux.resources.cpu.cpus`) of an environment: `ceil(limitMillicores / 1000)` of the host's CPUs,
 * consecutive in `hostCpus` order from position `(slot × count) mod n`, wrapping, so environments of small classes
 * spread over the cores by slot. The CFS quota (the limit, or less under the burst controller) can always be spent
 * on that many CPUs, so the cpuset never lowers the burst ceiling; it only stops a small environment from
 * spreading over more cores than its limit is worth, which is what `nproc` and `make -j` should see.
 * @param limitMillicores the class's CPU limit; undefined = unlimited.
 * @param slot the environment's slot number (stable for its lifetime).
 * @param hostCpus the CPUs environments may use (see {@link readHostCpus}).
 * @returns the CPU list, or undefined when the environment may use every host CPU (no cpuset needed).
 */
export function environmentCpus(limitMillicores: number | undefined, slot: number, hostCpus: readonly number[]): string | undefined {
  if (limitMillicores === undefined || hostCpus.length === 0) return undefined;
  const count = Math.max(1, Math.ceil(limitMillicores / 1000));
  if (count >= hostCpus.length) return undefined;
  const start = (slot * count) % hostCpus.length;
  const chosen: number[] = [];
  for (let offset = 0; offset < count; offset++) chosen.push(hostCpus[(start + offset) % hostCpus.length]!);
  return formatCpuList(chosen);
}

/**
 * The CPUs environments may use: those of the root cpuset (v1 `cpuset/cpuset.effective_cpus`, v2
 * `cpuset.cpus.effective`), where Warren's groups live, else the online CPUs (`/sys/devices/system/cpu/online`).
 * @param candidates files tried in order (tests pass their own).
 * @returns CPU numbers, ascending; `[]` when none can be read (then no cpuset is set).
 */
export async function readHostCpus(
  candidates: readonly string[] = [
    '/sys/fs/cgroup/cpuset/cpuset.effective_cpus',
    '/sys/fs/cgroup/cpuset.cpus.effective',
    '/sys/devices/system/cpu/online',
  ],
): Promise<number[]> {
  for (const path of candidates) {
    const cpus = parseCpuList(await readFile(path, 'utf8').catch(() => ''));
    if (cpus.length > 0) return cpus;
  }
  return [];
}
