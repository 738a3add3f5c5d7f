// Watch streams: `GET /api/v1/<plural>?watch=true[&resourceVersion=N]` as NDJSON WatchEvents
// (Kubernetes API concepts, "Efficient detection of changes").
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { WarrenError, errorMessage, type Logger } from '@warren/base';
import { API_VERSION, makeStatus, type Kind, type Resource, type WatchEvent } from '@warren/api';
import type { FastifyReply } from 'fastify';
import type { ObjectFilter, ResourceStore } from '../storage/store.js';
import { statusFromError } from './errors.js';

/** Timing of watch streams. */
export interface WatchTiming {
  /** Interval of BOOKMARK lines that keep idle connections (and proxies) alive, in ms (default 15 000). */
  bookmarkIntervalMs: number;
  /**
   * How long to wait for the first event before sending the response headers, in ms (default 500). A
   * GoneError raised within it becomes an HTTP 410 Status; one raised later arrives as an `ERROR` line
   * carrying the same Status (as Kubernetes does), which the @warren/api client turns into the same ApiError.
   */
  firstEventGraceMs: number;
}

/** Everything one watch stream needs. */
export interface WatchRequest {
  store: ResourceStore;
  kind: Kind;
  filter: ObjectFilter;
  /** Extra per-object visibility check on immutable fields, on top of the store filter (see ListScope). */
  visible: ((object: Resource) => boolean) | undefined;
  /** Resume after this resourceVersion; when undefined the current objects are sent as ADDED first. */
  fromResourceVersion: string | undefined;
  /** Shapes an object for the wire (e.g. removes secrets). */
  present: (object: Resource) => Resource;
  timing: WatchTiming;
  logger: Logger;
  requestId: string;
  /** Aborted when the server closes; the stream then ends cleanly. */
  serverSignal: AbortSignal;
}

type Settled<T> = { state: 'fulfilled'; value: T } | { state: 'rejected'; error: unknown } | { state: 'pending' };

/** Waits up to `ms` for `promise`; never rejects. */
async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Settled<T>>((resolve) => {
    timer = setTimeout(() => resolve({ state: 'pending' }), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value): Settled<T> => ({ state: 'fulfilled', value }),
        (error: unknown): Settled<T> => ({ state: 'rejected', error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Serves one watch. Before the headers are sent, errors are thrown (so the app's error handler answers with a
 * Status, e.g. 410 Gone); after, they end the stream with an `{type:"ERROR", object: Status}` line.
 * Resolves when the stream has ended (client gone, server closing, or error).
 */
export async function serveWatch(reply: FastifyReply, watch: WatchRequest): Promise<void> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  watch.serverSignal.addEventListener('abort', abort, { once: true });
  reply.raw.once('close', abort);
  let iterator: AsyncIterator<WatchEvent<Resource>> | undefined;
  let pending: Promise<IteratorResult<WatchEvent<Resource>>> | undefined;
  try {
    let lastResourceVersion: string;
    let initial: Resource[] = [];
    if (watch.fromResourceVersion === undefined) {
      const listed = await watch.store.list(watch.kind, watch.filter);
      initial = watch.visible ? listed.items.filter(watch.visible) : listed.items;
      lastResourceVersion = listed.resourceVersion;
    } else {
      lastResourceVersion = watch.fromResourceVersion;
    }
    const stream = watch.store.watch(watch.kind, { fromResourceVersion: lastResourceVersion, filter: watch.filter, signal: controller.signal });
    iterator = stream[Symbol.asyncIterator]() as AsyncIterator<WatchEvent<Resource>>;
    pending = iterator.next();
    pending.catch(() => undefined); // observed below; this only prevents an unhandled rejection after we stop
    if (initial.length === 0) {
      const first = await settleWithin(pending, watch.timing.firstEventGraceMs);
      if (first.state === 'rejected') throw first.error;
    }

    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'application/x-ndjson; charset=utf-8',
      'cache-control': 'no-cache, no-store',
      'x-request-id': watch.requestId,
      // Tell buffering proxies (nginx) to pass lines through as they come.
      'x-accel-buffering': 'no',
      // One stream per connection: when it ends the socket closes instead of idling in keep-alive.
      connection: 'close',
    });
    raw.flushHeaders();
    for (const object of initial) {
      if (!(await writeLine(raw, { type: 'ADDED', object: watch.present(object) }))) return;
    }

    const closed = new Promise<'closed'>((resolve) => {
      if (controller.signal.aborted) resolve('closed');
      controller.signal.addEventListener('abort', () => resolve('closed'), { once: true });
    });
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const bookmark = new Promise<'bookmark'>((resolve) => {
        timer = setTimeout(() => resolve('bookmark'), watch.timing.bookmarkIntervalMs);
      });
      let outcome: IteratorResult<WatchEvent<Resource>> | 'bookmark' | 'closed';
      try {
        outcome = await Promise.race([pending, bookmark, closed]);
      } catch (error) {
        if (controller.signal.aborted) return;
        await writeError(raw, error, watch);
        return;
      } finally {
        clearTimeout(timer);
      }
      if (outcome === 'closed') return;
      if (outcome === 'bookmark') {
        const line = { type: 'BOOKMARK', object: { kind: watch.kind, apiVersion: API_VERSION, metadata: { resourceVersion: lastResourceVersion } } };
        if (!(await writeLine(raw, line))) return;
        continue;
      }
      if (outcome.done) return;
      const event = outcome.value;
      pending = iterator.next();
      pending.catch(() => undefined);
      lastResourceVersion = event.object.metadata.resourceVersion;
      // The store's filter already turns "stopped matching" into DELETED; `visible` only checks immutable fields.
      if (event.type !== 'BOOKMARK' && watch.visible && !watch.visible(event.object)) continue;
      const line = event.type === 'BOOKMARK' ? event : { type: event.type, object: watch.present(event.object) };
      if (!(await writeLine(raw, line))) return;
    }
  } finally {
    watch.serverSignal.removeEventListener('abort', abort);
    controller.abort();
    if (iterator?.return) {
      // Do not await: an async generator's return() waits for its pending next(), which the abort ends.
      iterator.return().catch(() => undefined);
    }
    const raw = reply.raw;
    if (reply.sent && !raw.writableFinished && !raw.destroyed) {
      // Wait until the last line is flushed: the app's close() destroys sockets once every watch has returned.
      const finished = Promise.race([once(raw, 'finish'), once(raw, 'close')]).catch(() => undefined);
      if (!raw.writableEnded) raw.end();
      await finished;
    }
  }
}

/** Writes one NDJSON line, honouring backpressure. @returns false when the client has gone. */
async function writeLine(raw: ServerResponse, value: unknown): Promise<boolean> {
  if (raw.destroyed || raw.writableEnded) return false;
  if (raw.write(`${JSON.stringify(value)}\n`)) return true;
  const result = await Promise.race([once(raw, 'drain').then(() => true), once(raw, 'close').then(() => false)]);
  return result && !raw.destroyed;
}

async function writeError(raw: ServerResponse, error: unknown, watch: WatchRequest): Promise<void> {
  const { status, internal } = statusFromError(error, watch.requestId);
  if (internal) watch.logger.error({ requestId: watch.requestId, kind: watch.kind, err: error, error: errorMessage(error) }, 'watch failed');
  const gone = error instanceof WarrenError && error.reason === 'Gone';
  await writeLine(raw, { type: 'ERROR', object: gone ? makeStatus('Gone', status.message) : status });
}
