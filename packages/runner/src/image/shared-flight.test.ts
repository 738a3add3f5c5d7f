import { describe, expect, it } from 'vitest';
import { SharedFlight } from './shared-flight.js';

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('SharedFlight', () => {
  it('runs work once for concurrent callers of one key', async () => {
    const flight = new SharedFlight<number>();
    let runs = 0;
    const gate = deferred<number>();
    const work = () => {
      runs++;
      return gate.promise;
    };
    const a = flight.run('k', undefined, work);
    const b = flight.run('k', undefined, work);
    gate.resolve(7);
    expect(await Promise.all([a, b])).toEqual([7, 7]);
    expect(runs).toBe(1);
    expect(flight.has('k')).toBe(false);
  });

  it('keeps the work going while one caller remains, and aborts it when the last caller aborts', async () => {
    const flight = new SharedFlight<string>();
    let inner: AbortSignal | undefined;
    const gate = deferred<string>();
    const work = (signal: AbortSignal) => {
      inner = signal;
      return gate.promise;
    };
    const first = new AbortController();
    const second = new AbortController();
    const a = flight.run('k', first.signal, work);
    const b = flight.run('k', second.signal, work);
    first.abort(new Error('first cancelled'));
    await expect(a).rejects.toThrow('first cancelled');
    await Promise.resolve();
    expect(inner?.aborted).toBe(false);
    second.abort(new Error('second cancelled'));
    await expect(b).rejects.toThrow('second cancelled');
    expect(inner?.aborted).toBe(true);
    expect(flight.has('k')).toBe(false);
    gate.resolve('late');
  });

  it('shares a failure with every caller and forgets the key afterwards', async () => {
    const flight = new SharedFlight<string>();
    const failing = () => Promise.reject(new Error('boom'));
    await expect(Promise.all([flight.run('k', undefined, failing), flight.run('k', undefined, failing)])).rejects.toThrow('boom');
    expect(await flight.run('k', undefined, () => Promise.resolve('again'))).toBe('again');
  });
});
