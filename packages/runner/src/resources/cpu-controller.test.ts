// Unit tests of the CPU burst controller's loop on fake cgroups: periods are driven with tick() and a fake
// clock, so nothing depends on wall-clock time.
import { describe, expect, it } from 'vitest';
import type { CgroupCpuSample } from '../linux/index.js';
import { CpuBurstController, type CpuCgroups, type CpuTarget, parseProcStatBusy } from './cpu-controller.js';

const SECOND = 1_000_000_000n;

/** In-memory cgroups: counters advanced by `burn`, quotas written by the controller. */
class FakeCgroups implements CpuCgroups {
  readonly groups = new Map<string, CgroupCpuSample>();
  readonly writes: Array<[string, number]> = [];
  failWrites = false;

  add(name: string, quotaMillicores: number): void {
    this.groups.set(name, { usageNanoseconds: 0, throttledPeriods: 0, throttledNanoseconds: 0, quotaMillicores });
  }

  /** `name` used `millicores` for one second (capped at its quota), throttled when it wanted more. */
  burn(name: string, wantedMillicores: number): void {
    const group = this.groups.get(name)!;
    const used = Math.min(wantedMillicores, group.quotaMillicores ?? Infinity);
    group.usageNanoseconds += used * 1_000_000;
    if (wantedMillicores > used) {
      group.throttledPeriods += 10;
      group.throttledNanoseconds += 100_000_000;
    }
  }

  cpuSample(name: string): Promise<CgroupCpuSample | undefined> {
    const group = this.groups.get(name);
    return Promise.resolve(group ? { ...group } : undefined);
  }

  setCpuQuota(name: string, millicores: number): Promise<void> {
    if (this.failWrites) return Promise.reject(new Error('EACCES'));
    this.writes.push([name, millicores]);
    this.groups.get(name)!.quotaMillicores = millicores;
    return Promise.resolve();
  }
}

function setup(targets: CpuTarget[]) {
  const cgroups = new FakeCgroups();
  for (const target of targets) cgroups.add(target.name, target.requestMillicores);
  let clock = 0n;
  const controller = new CpuBurstController({
    cgroups,
    targets: () => Promise.resolve(targets),
    hostCpuMillicores: 2000,
    reservedMillicores: 0,
    hostBusyNanoseconds: () => Promise.resolve(undefined),
    now: () => clock,
  });
  const advance = () => {
    clock += SECOND;
  };
  return { cgroups, controller, advance };
}

const a = { name: 'env-a', requestMillicores: 250, limitMillicores: 2000 };
const b = { name: 'env-b', requestMillicores: 250, limitMillicores: 2000 };

describe('CpuBurstController', () => {
  it('records counters in the first period and decides from the second', async () => {
    const { controller, advance, cgroups } = setup([a, b]);
    expect(await controller.tick()).toEqual([]);
    advance();
    cgroups.burn('env-a', 2000);
    const decisions = await controller.tick();
    expect(decisions.map((decision) => decision.name)).toEqual(['env-a', 'env-b']);
  });

  it('raises a burning environment when the host is idle and pulls it back when the other burns too', async () => {
    const { controller, advance, cgroups } = setup([a, b]);
    await controller.tick();
    advance();
    cgroups.burn('env-a', 2000);
    await controller.tick();
    expect(cgroups.groups.get('env-a')!.quotaMillicores).toBe(2000);
    expect(controller.latestDecisions().find((decision) => decision.name === 'env-a')).toMatchObject({ reason: 'limit', hungry: true });

    // b starts burning: both are short of CPU, each is pulled to half the host (equal requests).
    advance();
    cgroups.burn('env-a', 2000);
    cgroups.burn('env-b', 2000);
    await controller.tick();
    expect(cgroups.groups.get('env-a')!.quotaMillicores).toBe(1000);
    expect(cgroups.groups.get('env-b')!.quotaMillicores).toBe(1000);
    expect(controller.latestDecisions().map((decision) => decision.reason)).toEqual(['contention', 'contention']);

    // b stops: a bursts again.
    advance();
    cgroups.burn('env-a', 2000);
    await controller.tick();
    expect(cgroups.groups.get('env-a')!.quotaMillicores).toBe(2000);
    expect(controller.quotaChanges()).toBe(cgroups.writes.length);
  });

  it('forgets environments that are no longer targets and restarts after a counter reset', async () => {
    const targets = [a, b];
    const cgroups = new FakeCgroups();
    cgroups.add('env-a', 250);
    cgroups.add('env-b', 250);
    let clock = 0n;
    const controller = new CpuBurstController({
      cgroups,
      targets: () => Promise.resolve([...targets]),
      hostCpuMillicores: 2000,
      hostBusyNanoseconds: () => Promise.resolve(undefined),
      now: () => clock,
    });
    await controller.tick();
    clock += SECOND;
    await controller.tick();
    expect(controller.latestDecisions()).toHaveLength(2);
    targets.pop();
    cgroups.burn('env-a', 200);
    clock += SECOND;
    await controller.tick();
    expect(controller.latestDecisions().map((decision) => decision.name)).toEqual(['env-a']);
    // env-a's group was made anew (counters back to zero): no decision until two samples.
    cgroups.add('env-a', 250);
    clock += SECOND;
    expect(await controller.tick()).toEqual([]);
  });

  it('skips an environment whose group is missing and keeps going when a write fails', async () => {
    const { controller, advance, cgroups } = setup([a, b, { name: 'env-gone', requestMillicores: 100, limitMillicores: 1000 }]);
    cgroups.groups.delete('env-gone');
    await controller.tick();
    advance();
    cgroups.burn('env-a', 2000);
    cgroups.failWrites = true;
    const decisions = await controller.tick();
    expect(decisions.map((decision) => decision.name)).toEqual(['env-a', 'env-b']);
    expect(controller.quotaChanges()).toBe(0);
    // The failed environment is not reported as decided; b (written too) likewise.
    expect(controller.latestDecisions()).toEqual([]);
  });

  it('runs periods on its own once started and stops on close', async () => {
    const { cgroups } = setup([a]);
    let periods = 0;
    const controller = new CpuBurstController({
      cgroups,
      targets: () => {
        periods += 1;
        return Promise.resolve([a]);
      },
      periodMs: 1,
      hostCpuMillicores: 2000,
      hostBusyNanoseconds: () => Promise.resolve(undefined),
    });
    controller.start();
    while (periods < 3) await new Promise((resolve) => setTimeout(resolve, 1));
    await controller.close();
    const after = periods;
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(periods).toBe(after);
  });

  it('refuses a period over one second', () => {
    expect(() => new CpuBurstController({ cgroups: new FakeCgroups(), targets: () => Promise.resolve([]), periodMs: 1500 })).toThrow(
      RangeError,
    );
  });
});

describe('parseProcStatBusy', () => {
  it('counts all but idle and iowait, in USER_HZ ticks', () => {
    expect(parseProcStatBusy('cpu  100 20 30 1000 50 5 5 10 0 0\ncpu0 1 2 3 4\n')).toBe(1.7 * 1e9);
    expect(parseProcStatBusy('intr 1 2\n')).toBeUndefined();
  });
});
