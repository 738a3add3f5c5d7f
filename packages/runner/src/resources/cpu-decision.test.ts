// Unit tests of the CPU burst controller's pure decision (decideCpuQuotas) and its water-filling.
import { describe, expect, it } from 'vitest';
import { type CpuHost, type CpuSample, decideCpuQuotas, waterFill } from './cpu-decision.js';

const SECOND = 1_000_000_000;
/** A 2-CPU host with nothing reserved, sampled over one second. */
const host: CpuHost = { cpuMillicores: 2000, reservedMillicores: 0, elapsedNanoseconds: SECOND };

/** A sample using `usage` millicores during one second; `throttled` marks it throttled. */
function sample(name: string, fields: { request: number; limit: number; quota: number; usage: number; throttled?: boolean }): CpuSample {
  return {
    name,
    requestMillicores: fields.request,
    limitMillicores: fields.limit,
    quotaMillicores: fields.quota,
    usageNanoseconds: fields.usage * 1_000_000,
    throttledPeriods: fields.throttled ? 5 : 0,
    throttledNanoseconds: fields.throttled ? 50_000_000 : 0,
  };
}

function byName(decisions: ReturnType<typeof decideCpuQuotas>) {
  return Object.fromEntries(decisions.map((decision) => [decision.name, decision]));
}

describe('waterFill', () => {
  it('divides by weight, capped at demand, redistributing what capped parties leave', () => {
    expect(waterFill(2000, [250, 250], [2000, 2000])).toEqual([1000, 1000]);
    expect(waterFill(2000, [250, 750], [2000, 2000])).toEqual([500, 1500]);
    expect(waterFill(2000, [250, 250], [100, 2000])).toEqual([100, 1900]);
    expect(waterFill(2000, [250, 250, 500], [2000, 100, 2000])).toEqual([expect.closeTo(633.33, 1), 100, expect.closeTo(1266.67, 1)]);
  });

  it('gives nothing to parties without demand and never more than the capacity', () => {
    expect(waterFill(2000, [250, 250], [0, 0])).toEqual([0, 0]);
    expect(waterFill(0, [250, 250], [500, 500])).toEqual([0, 0]);
    expect(waterFill(-5, [1], [500])).toEqual([0]);
    const shares = waterFill(1000, [1, 2, 3], [900, 900, 900]);
    expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1000, 6);
  });

  it('counts a zero weight as one', () => {
    expect(waterFill(100, [0, 0], [100, 100])).toEqual([50, 50]);
  });
});

describe('decideCpuQuotas', () => {
  it('raises a throttled environment to its limit when the host is otherwise idle (burst)', () => {
    const decisions = byName(
      decideCpuQuotas(host, [
        sample('a', { request: 250, limit: 2000, quota: 250, usage: 250, throttled: true }),
        sample('b', { request: 250, limit: 2000, quota: 250, usage: 0 }),
      ]),
    );
    expect(decisions.a).toMatchObject({
      quotaMillicores: 2000,
      changed: true,
      reason: 'limit',
      hungry: true,
      previousQuotaMillicores: 250,
    });
    // b is idle: its quota is what it would get if it burst now against a (half of the host).
    expect(decisions.b).toMatchObject({ quotaMillicores: 1000, changed: true, reason: 'headroom', hungry: false });
  });

  it('raises to the idle CPU left by a busy neighbour that is not short of CPU (burst, below the limit)', () => {
    const decisions = byName(
      decideCpuQuotas(host, [
        sample('a', { request: 250, limit: 2000, quota: 500, usage: 495 }),
        sample('b', { request: 250, limit: 2000, quota: 2000, usage: 800 }),
      ]),
    );
    // b keeps 800 * 1.25 = 1000 of headroom; a takes the other 1000.
    expect(decisions.a).toMatchObject({ quotaMillicores: 1000, reason: 'burst', hungry: true });
    expect(decisions.b).toMatchObject({ hungry: false, reason: 'headroom' });
  });

  it('pulls both back to shares proportional to requests when both are short of CPU (contention)', () => {
    const equal = byName(
      decideCpuQuotas(host, [
        sample('a', { request: 250, limit: 2000, quota: 2000, usage: 1500, throttled: true }),
        sample('b', { request: 250, limit: 2000, quota: 1000, usage: 500, throttled: true }),
      ]),
    );
    expect(equal.a).toMatchObject({ quotaMillicores: 1000, reason: 'contention', changed: true });
    expect(equal.b).toMatchObject({ quotaMillicores: 1000, reason: 'contention', changed: false });

    const weighted = byName(
      decideCpuQuotas(host, [
        sample('a', { request: 500, limit: 2000, quota: 2000, usage: 1900, throttled: true }),
        sample('b', { request: 1500, limit: 2000, quota: 500, usage: 100, throttled: true }),
      ]),
    );
    expect(weighted.a).toMatchObject({ quotaMillicores: 500, reason: 'contention' });
    expect(weighted.b).toMatchObject({ quotaMillicores: 1500, reason: 'burst' });
  });

  it('never goes below the request, even when requests are overbooked', () => {
    const samples = Array.from({ length: 10 }, (_, index) =>
      sample(`e${index}`, { request: 500, limit: 2000, quota: 2000, usage: 200, throttled: true }),
    );
    for (const decision of decideCpuQuotas(host, samples)) {
      expect(decision.quotaMillicores).toBe(500);
      expect(decision.reason).toBe('contention');
    }
  });

  it('never goes above the limit', () => {
    const decisions = decideCpuQuotas(host, [sample('a', { request: 100, limit: 700, quota: 100, usage: 100, throttled: true })]);
    expect(decisions[0]).toMatchObject({ quotaMillicores: 700, reason: 'limit' });
  });

  it('keeps the reserved CPU out of what is shared', () => {
    const decisions = decideCpuQuotas({ ...host, reservedMillicores: 300 }, [
      sample('a', { request: 250, limit: 2000, quota: 250, usage: 250, throttled: true }),
    ]);
    expect(decisions[0]).toMatchObject({ quotaMillicores: 1700, reason: 'burst' });
  });

  it('does not share CPU that the host spends outside the environments beyond the reserve', () => {
    // The host was busy 1.2 CPUs, 0.25 of them in a: 0.95 outside, more than the 0.3 reserved.
    const decisions = decideCpuQuotas({ ...host, reservedMillicores: 300, busyNanoseconds: 1.2 * SECOND }, [
      sample('a', { request: 250, limit: 2000, quota: 250, usage: 250, throttled: true }),
    ]);
    expect(decisions[0]).toMatchObject({ quotaMillicores: 1050, reason: 'burst' });
  });

  it('counts an environment using >= 90 % of its quota as short of CPU even without throttling', () => {
    const decisions = decideCpuQuotas(host, [sample('a', { request: 250, limit: 1000, quota: 500, usage: 460 })]);
    expect(decisions[0]).toMatchObject({ hungry: true, quotaMillicores: 1000 });
    const calm = decideCpuQuotas(host, [sample('a', { request: 250, limit: 1000, quota: 500, usage: 400 })]);
    expect(calm[0]).toMatchObject({ hungry: false });
  });

  it('leaves small changes alone (dead band) but always corrects a quota outside [request, limit]', () => {
    const small = decideCpuQuotas(host, [
      sample('a', { request: 250, limit: 2000, quota: 990, usage: 990, throttled: true }),
      sample('b', { request: 250, limit: 2000, quota: 1010, usage: 1000, throttled: true }),
    ]);
    expect(small.map((decision) => [decision.changed, decision.reason, decision.quotaMillicores])).toEqual([
      [false, 'unchanged', 990],
      [false, 'unchanged', 1010],
    ]);
    const outside = decideCpuQuotas(host, [sample('a', { request: 250, limit: 2000, quota: 2010, usage: 2000, throttled: true })]);
    expect(outside[0]).toMatchObject({ changed: true, quotaMillicores: 2000 });
    const below = decideCpuQuotas(host, [sample('a', { request: 250, limit: 2000, quota: 240, usage: 0 })]);
    expect(below[0]).toMatchObject({ changed: true });
  });

  it('scales usage by the sampled period', () => {
    const decisions = decideCpuQuotas({ ...host, elapsedNanoseconds: SECOND / 2 }, [
      { ...sample('a', { request: 250, limit: 2000, quota: 1000, usage: 0 }), usageNanoseconds: 250_000_000 },
    ]);
    expect(decisions[0]).toMatchObject({ usageMillicores: 500, hungry: false });
  });

  it('treats a request above the limit as the limit', () => {
    const decisions = decideCpuQuotas(host, [sample('a', { request: 3000, limit: 1000, quota: 1000, usage: 0 })]);
    expect(decisions[0]).toMatchObject({ quotaMillicores: 1000, reason: 'limit' });
  });

  it('explains each decision in words', () => {
    const [decision] = decideCpuQuotas(host, [sample('a', { request: 250, limit: 2000, quota: 250, usage: 250, throttled: true })]);
    expect(decision!.message).toContain('request 250m, limit 2000m');
  });

  it('keeps every quota within [request, limit] and gives hungry ones no more than the capacity (random cases)', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let round = 0; round < 500; round += 1) {
      const cpus = 1 + Math.floor(random() * 16);
      const testHost: CpuHost = {
        cpuMillicores: cpus * 1000,
        reservedMillicores: Math.floor(random() * 500),
        elapsedNanoseconds: SECOND,
      };
      const samples = Array.from({ length: 1 + Math.floor(random() * 12) }, (_, index) => {
        const limit = 10 + Math.floor(random() * cpus * 1000);
        const request = 10 + Math.floor(random() * limit);
        const quota = 10 + Math.floor(random() * cpus * 1000);
        return sample(`e${index}`, {
          request,
          limit,
          quota,
          usage: Math.floor(random() * Math.min(quota, limit)),
          throttled: random() < 0.3,
        });
      });
      const decisions = decideCpuQuotas(testHost, samples);
      expect(decisions).toHaveLength(samples.length);
      let hungryAboveRequest = 0;
      decisions.forEach((decision, index) => {
        const input = samples[index]!;
        const request = Math.min(input.limitMillicores, input.requestMillicores);
        expect(decision.name).toBe(input.name);
        if (decision.changed) {
          expect(decision.quotaMillicores).toBeGreaterThanOrEqual(request);
          expect(decision.quotaMillicores).toBeLessThanOrEqual(input.limitMillicores);
        } else {
          expect(decision.quotaMillicores).toBe(input.quotaMillicores);
        }
        if (decision.hungry && decision.changed) hungryAboveRequest += decision.quotaMillicores - request;
      });
      expect(hungryAboveRequest).toBeLessThanOrEqual(testHost.cpuMillicores);
      // Pure: the same inputs give the same decisions.
      expect(decideCpuQuotas(testHost, samples)).toEqual(decisions);
    }
  });
});
