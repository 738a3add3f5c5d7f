// Watch streams over a real socket, read with the @warren/api client.
import { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, WarrenClient, type Environment, type Resource, type ResourceList, type WatchEvent } from '@warren/api';
import { silentLogger } from '@warren/base';
import type { FastifyReply } from 'fastify';
import type { ResourceStore } from '../storage/index.js';
import { serveWatch } from './watch.js';
import { closeSharedPglite } from '../storage/testing.js';
import { openApiFixture, statusOf, type ApiFixture } from './testing.js';

afterAll(async () => {
  await closeSharedPglite();
});

type Iter = AsyncIterator<WatchEvent<Environment>>;

async function nextEvent(iterator: Iter): Promise<WatchEvent<Environment>> {
  for (;;) {
    const result = await iterator.next();
    if (result.done) throw new Error('watch ended');
    if (result.value.type !== 'BOOKMARK') return result.value;
  }
}

describe('watch', () => {
  let fx: ApiFixture;
  let url: string;
  const client = (who: 'userA' | 'userB' | 'runner1' | 'runner2' | 'admin') => new WarrenClient({ server: url, token: fx.tokens[who] });
  const controllers: AbortController[] = [];
  const open = (who: 'userA' | 'userB' | 'runner1' | 'runner2' | 'admin', resourceVersion?: string): Iter => {
    const controller = new AbortController();
    controllers.push(controller);
    return client(who)
      .watch('Environment', { signal: controller.signal, ...(resourceVersion ? { resourceVersion } : {}) })
      [Symbol.asyncIterator]();
  };

  beforeAll(async () => {
    fx = await openApiFixture({ watchFirstEventGraceMs: 50, watchBookmarkIntervalMs: 60_000 });
    url = await fx.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterEach(() => {
    for (const controller of controllers.splice(0)) controller.abort();
  });
  afterAll(async () => {
    await fx.close();
  });

  it("streams ADDED, MODIFIED and DELETED of the caller's own environments only", async () => {
    const mine = await fx.createEnvironment('userA', 'w-first');
    await fx.createEnvironment('userB', 'w-theirs');
    const events = open('userA');
    const initial = await nextEvent(events);
    expect(initial).toMatchObject({ type: 'ADDED', object: { metadata: { id: mine.metadata.id } } });

    await fx.createEnvironment('userB', 'w-theirs-2');
    const second = await fx.createEnvironment('userA', 'w-second');
    expect(await nextEvent(events)).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'w-second' } } });
    await fx.call('userA', 'PATCH', '/api/v1/environments/w-second', { spec: { desiredPhase: 'Stopped' } });
    expect(await nextEvent(events)).toMatchObject({ type: 'MODIFIED', object: { spec: { desiredPhase: 'Stopped' } } });
    await fx.call('userA', 'DELETE', `/api/v1/environments/${second.metadata.id}`);
    expect(await nextEvent(events)).toMatchObject({ type: 'DELETED', object: { metadata: { id: second.metadata.id } } });
  });

  it('resumes from a resourceVersion', async () => {
    const listed = await fx.call('userA', 'GET', '/api/v1/environments');
    const resourceVersion = listed.json<ResourceList<Environment>>().metadata.resourceVersion;
    await fx.createEnvironment('userA', 'w-missed');
    const events = open('userA', resourceVersion);
    expect(await nextEvent(events)).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'w-missed' } } });
  });

  it("filters a runner's watch to the environments scheduled to it", async () => {
    const environment = await fx.createEnvironment('userA', 'w-sched');
    const listed = await fx.call('runner1', 'GET', '/api/v1/environments');
    const resourceVersion = listed.json<ResourceList<Environment>>().metadata.resourceVersion;
    const r1 = open('runner1', resourceVersion);
    const r2 = open('runner2', resourceVersion);
    await fx.schedule(environment.metadata.id, fx.runners.r1.metadata.id);
    const seen = await nextEvent(r1);
    expect(seen.object.metadata.id).toBe(environment.metadata.id);
    expect(seen.object.status.runnerId).toBe(fx.runners.r1.metadata.id);
    // r2 sees the next environment scheduled to it, and never the one of r1.
    const other = await fx.createEnvironment('userA', 'w-sched-2');
    await fx.schedule(other.metadata.id, fx.runners.r2.metadata.id);
    expect((await nextEvent(r2)).object.metadata.id).toBe(other.metadata.id);
  });

  it('delivers a burst of concurrent writes whole and in resourceVersion order to every watcher', async () => {
    const listed = await fx.call('admin', 'GET', '/api/v1/environments');
    const resourceVersion = listed.json<ResourceList<Environment>>().metadata.resourceVersion;
    const watchers = [open('admin', resourceVersion), open('admin', resourceVersion), open('userA', resourceVersion)];
    // Written concurrently, so several events share one commit batch and one tick of each stream's writer.
    const created = await Promise.all(
      Array.from({ length: 12 }, (_, index) => fx.createEnvironment(index % 2 ? 'userA' : 'userB', `burst-${index}`)),
    );
    const all = created.map((environment) => environment.metadata.resourceVersion).sort((a, b) => Number(a) - Number(b));
    const userA = created
      .filter((environment) => environment.metadata.ownerId === fx.userIds.userA)
      .map((environment) => environment.metadata.resourceVersion)
      .sort((a, b) => Number(a) - Number(b));
    for (const [index, watcher] of watchers.entries()) {
      const expected = index < 2 ? all : userA;
      const seen: WatchEvent<Environment>[] = [];
      while (seen.length < expected.length) seen.push(await nextEvent(watcher));
      expect(seen.map((event) => event.object.metadata.resourceVersion)).toEqual(expected);
      expect(seen.every((event) => event.type === 'ADDED' && event.object.spec.source.git.url !== undefined)).toBe(true);
    }
  });

  it('refuses anonymous watches with 401', async () => {
    const response = await fx.call('anonymous', 'GET', '/api/v1/environments?watch=true');
    expect(response.statusCode).toBe(401);
    expect(statusOf(response).reason).toBe('Unauthorized');
  });

  it('ends open watches when the app closes', async () => {
    const local = await openApiFixture({ watchFirstEventGraceMs: 10 });
    const localUrl = await local.app.listen({ host: '127.0.0.1', port: 0 });
    await local.createEnvironment('userA', 'c-1');
    const watcher = new WarrenClient({ server: localUrl, token: local.tokens.userA }).watch('Environment')[Symbol.asyncIterator]();
    expect(await nextEvent(watcher)).toMatchObject({ type: 'ADDED' }); // the stream is established
    const pending = watcher.next();
    await local.close();
    await expect(pending).resolves.toMatchObject({ done: true });
  });
});

describe('watch history', () => {
  let fx: ApiFixture;
  beforeAll(async () => {
    fx = await openApiFixture({ watchFirstEventGraceMs: 10_000 }, { eventHistoryLimit: 3 });
  });
  afterAll(async () => {
    await fx.close();
  });

  it('answers 410 Gone for a resourceVersion older than the kept history', async () => {
    for (let index = 0; index < 6; index++) await fx.createEnvironment('userA', `h-${index}`);
    await fx.store.pruneEvents();
    const response = await fx.call('userA', 'GET', '/api/v1/environments?watch=true&resourceVersion=1');
    expect(response.statusCode).toBe(410);
    expect(statusOf(response).reason).toBe('Gone');
  });

  it('the client turns it into an ApiError with code 410', async () => {
    const url = await fx.app.listen({ host: '127.0.0.1', port: 0 });
    const watcher = new WarrenClient({ server: url, token: fx.tokens.userA }).watch('Environment', { resourceVersion: '1' });
    const error = await watcher.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe(410);
  });
});

describe('bookmarks', () => {
  it('keep idle watches alive with the last resourceVersion', async () => {
    const fx = await openApiFixture({ watchFirstEventGraceMs: 10, watchBookmarkIntervalMs: 20 });
    try {
      const url = await fx.app.listen({ host: '127.0.0.1', port: 0 });
      const listed = await fx.call('userB', 'GET', '/api/v1/environments');
      const resourceVersion = listed.json<ResourceList<Environment>>().metadata.resourceVersion;
      const controller = new AbortController();
      const watcher = new WarrenClient({ server: url, token: fx.tokens.userB }).watch('Environment', {
        resourceVersion,
        signal: controller.signal,
      });
      const first = await watcher.next();
      controller.abort();
      expect(first.value).toEqual({ type: 'BOOKMARK', object: { kind: 'Environment', apiVersion: 'v1', metadata: { resourceVersion } } });
    } finally {
      await fx.close();
    }
  });
});

describe('backpressure', () => {
  /** A response whose writes report backpressure while `full`, until `drain()`; records what was written. */
  class FakeResponse extends EventEmitter {
    chunks: string[] = [];
    full = false;
    writableNeedDrain = false;
    destroyed = false;
    writableEnded = false;
    writableFinished = false;
    writeHead(): this {
      return this;
    }
    flushHeaders(): void {}
    write(chunk: string): boolean {
      this.chunks.push(chunk);
      if (this.full) this.writableNeedDrain = true;
      return !this.full;
    }
    end(): void {
      this.writableEnded = this.writableFinished = true;
      this.emit('finish');
    }
    drain(): void {
      this.full = false;
      this.writableNeedDrain = false;
      this.emit('drain');
    }
    names(): string[] {
      return this.chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as WatchEvent<Environment>).object.metadata.name);
    }
  }

  it('stops pulling events while the client is backpressured and resumes on drain, also after a drain it did not wait for', async () => {
    const queued: WatchEvent<Resource>[] = [];
    let wake: (() => void) | undefined;
    const store = {
      async *watch(_kind: string, options: { signal: AbortSignal }) {
        options.signal.addEventListener('abort', () => wake?.());
        for (;;) {
          while (queued.length === 0 && !options.signal.aborted) await new Promise<void>((resolve) => (wake = resolve));
          if (options.signal.aborted) return;
          yield queued.shift()!;
        }
      },
    } as unknown as ResourceStore;
    const send = (name: string) => {
      queued.push({
        type: 'ADDED',
        object: { kind: 'Environment', metadata: { name, resourceVersion: String(queued.length + 1) } } as unknown as Resource,
      });
      wake?.();
    };
    const ticks = async () => {
      for (let index = 0; index < 5; index++) await new Promise((resolve) => setImmediate(resolve));
    };
    const raw = new FakeResponse();
    const reply = { raw, sent: false } as unknown as FastifyReply & { sent: boolean };
    (reply as unknown as { hijack: () => void }).hijack = () => (reply.sent = true);
    const closing = new AbortController();
    raw.full = true;
    send('a');
    const served = serveWatch(reply, {
      store,
      kind: 'Environment',
      filter: {},
      visible: undefined,
      fromResourceVersion: '0',
      present: (object) => object,
      timing: { bookmarkIntervalMs: 60_000, firstEventGraceMs: 1_000 },
      logger: silentLogger,
      requestId: 'r',
      serverSignal: closing.signal,
    });
    await ticks();
    expect(raw.names()).toEqual(['a']);
    raw.drain(); // while the stream waits for its next event, not for 'drain'
    send('b');
    await ticks();
    expect(raw.names()).toEqual(['a', 'b']);

    raw.full = true;
    send('c');
    await ticks();
    send('d');
    await ticks();
    send('e');
    send('f');
    await ticks();
    // 'c' filled the socket; the event in hand ('d') is still written, 'e' is read ahead, 'f' waits for 'drain'.
    expect(raw.names()).toEqual(['a', 'b', 'c', 'd']);
    expect(queued.length).toBe(1);
    raw.drain();
    await ticks();
    expect(raw.names()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);

    closing.abort();
    await served;
    expect(raw.writableEnded).toBe(true);
  });
});
