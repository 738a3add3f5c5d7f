// Unit tests of the OOM watch: a counter that moves queues its environment once; unchanged, stopped or unreadable
// ones are left alone.
import type { Environment, EnvironmentStats } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { watchOomKills } from './oom-watch.js';

function environment(id: string, phase: Environment['status']['phase']): Environment {
  return { metadata: { id }, status: { phase } } as unknown as Environment;
}

describe('watchOomKills', () => {
  it('queues a running environment when its counter moves, and only then', async () => {
    const counters = new Map<string, number | undefined>([
      ['env-a', 0],
      ['env-b', 2],
      ['env-c', 5],
    ]);
    const environments = [
      environment('env-a', 'Running'),
      environment('env-b', 'Running'),
      environment('env-c', 'Stopped'),
      environment('env-d', 'Running'),
    ];
    const queued: string[] = [];
    const controller = new AbortController();
    let looks = 0;
    const stats = (id: string): Promise<EnvironmentStats | undefined> => {
      if (id === 'env-d') return Promise.reject(new Error('unreadable'));
      const oomKills = counters.get(id);
      return Promise.resolve({ environmentId: id, sampleTime: new Date(0).toISOString(), ...(oomKills === undefined ? {} : { oomKills }) });
    };
    const done = watchOomKills({
      stats,
      environments: () => {
        looks++;
        // Third look: env-a got its first kill; fifth: stop.
        if (looks === 3) counters.set('env-a', 1);
        if (looks === 5) controller.abort();
        return environments;
      },
      enqueue: (id) => queued.push(id),
      signal: controller.signal,
      intervalMs: 1,
    });
    await done;
    // env-b: a first look above 0 (kills before a runner restart); env-a: its counter moved once; env-c is stopped.
    expect(queued).toEqual(['env-b', 'env-a']);
  });
});
