// Watch streams: `GET /api/v1/<plural>?watch=true[&resourceVersion=N]` as NDJSON WatchEvents
// (Kubernetes API concepts, "Efficient detection of changes").
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { WarrenError, errorMessage, type Logger } from '@warren/base';
import { API_VERSION, makeStatus, type Kind, type Resource, type WatchEvent } from '@warren/api';
import type { FastifyReply } from 'fastify';
import type { ObjectFilter, ResourceStore } from '../storage/index.js';
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

/** Serialised event lines by the (frozen, shared) object they carry: one JSON.stringify per event, not per watcher. */
const serializedLines = new WeakMap<Resource, Partial<Record<'ADDED' | 'MODIFIED' | 'DELETED', string>>>();

/**
 * The NDJSON line of an ADDED/MODIFIED/DELETED event. The store hands the same frozen object to every watcher whose
 * filter matches, so the line is built once and reused; `present` returning a new object (tokens) just misses.
 */
function eventLine(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: Resource): string {
  let lines = serializedLines.get(object);
  if (!lines) {
    lines = {};
    serializedLines.set(object, lines);
  }
  return (lines[type] ??= `{"type":"${type}","object":${JSON.stringify(object)}}\n`);
}

/**
 * Buffers a stream's lines and writes them in one `write` per tick (after the microtasks that dispatched them), so
 * events dispatched together cost one chunk and one socket write (a writev syscall: the main cost of fan-out to
 * many watchers on loopback) per watcher. Deferring to setImmediate merged more on PostgreSQL but delayed delivery
 * on PGlite, whose queries run as microtasks and make a loop turn long (bench/control-plane/README.md).
 */
class LineWriter {
  private buffer = '';
  private scheduled = false;

  constructor(private readonly raw: ServerResponse) {}

  /** False once the client has gone or the stream ended. */
  get open(): boolean {
    return !this.raw.destroyed && !this.raw.writableEnded;
  }

  /** True while the socket is backpressured (a write returned false and 'drain' has not come yet): await {@link drained}. */
  get full(): boolean {
    return this.raw.writableNeedDrain;
  }

  push(line: string): void {
    this.buffer += line;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.buffer === '') return;
    const chunk = this.buffer;
    this.buffer = '';
    if (this.open) this.raw.write(chunk);
  }

  /** Resolves once the client has taken what was written. @returns false when the client has gone. */
  async drained(): Promise<boolean> {
    if (!this.raw.writableNeedDrain) return this.open;
    const result = await Promise.race([once(this.raw, 'drain').then(() => true), once(this.raw, 'close').then(() => false)]);
    return result && this.open;
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
  let bookmarkTimer: NodeJS.Timeout | undefined;
  let writer: LineWriter | undefined;
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
    const stream = watch.store.watch(watch.kind, {
      fromResourceVersion: lastResourceVersion,
      filter: watch.filter,
      signal: controller.signal,
    });
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
    const lines = (writer = new LineWriter(raw));
    for (const object of initial) {
      lines.push(eventLine('ADDED', watch.present(object)));
      lines.flush();
      if (!(await lines.drained())) return;
    }

    // A BOOKMARK after each quiet interval: one timer per stream, pushed back (refresh) by every event.
    const bookmark = () => {
      if (!lines.open) return;
      const line = {
        type: 'BOOKMARK',
        object: { kind: watch.kind, apiVersion: API_VERSION, metadata: { resourceVersion: lastResourceVersion } },
      };
      lines.push(`${JSON.stringify(line)}\n`);
      bookmarkTimer?.refresh();
    };
    bookmarkTimer = setTimeout(bookmark, watch.timing.bookmarkIntervalMs);
    // The store's stream ends (done) when `controller` aborts (client gone, server closing), so awaiting it alone
    // is enough: no race against a timer or a close promise per event.
    for (;;) {
      let outcome: IteratorResult<WatchEvent<Resource>>;
      try {
        outcome = await pending;
      } catch (error) {
        if (controller.signal.aborted) return;
        await writeError(lines, error, watch);
        return;
      }
      if (outcome.done || controller.signal.aborted) return;
      const event = outcome.value;
      pending = iterator.next();
      pending.catch(() => undefined);
      lastResourceVersion = event.object.metadata.resourceVersion;
      bookmarkTimer.refresh();
      // The store's filter already turns "stopped matching" into DELETED; `visible` only checks immutable fields.
      if (event.type === 'BOOKMARK') {
        lines.push(`${JSON.stringify(event)}\n`);
      } else {
        if (watch.visible && !watch.visible(event.object)) continue;
        lines.push(eventLine(event.type, watch.present(event.object)));
      }
      if (lines.full && !(await lines.drained())) return;
    }
  } finally {
    clearTimeout(bookmarkTimer);
    watch.serverSignal.removeEventListener('abort', abort);
    controller.abort();
    if (iterator?.return) {
      // Do not await: an async generator's return() waits for its pending next(), which the abort ends.
      iterator.return().catch(() => undefined);
    }
    writer?.flush();
    const raw = reply.raw;
    if (reply.sent && !raw.writableFinished && !raw.destroyed) {
      // Wait until the last line is flushed: the app's close() destroys sockets once every watch has returned.
      const finished = Promise.race([once(raw, 'finish'), once(raw, 'close')]).catch(() => undefined);
      if (!raw.writableEnded) raw.end();
      await finished;
    }
  }
}

async function writeError(lines: LineWriter, error: unknown, watch: WatchRequest): Promise<void> {
  const { status, internal } = statusFromError(error, watch.requestId);
  if (internal)
    watch.logger.error({ requestId: watch.requestId, kind: watch.kind, err: error, error: errorMessage(error) }, 'watch failed');
  const gone = error instanceof WarrenError && error.reason === 'Gone';
  lines.push(`${JSON.stringify({ type: 'ERROR', object: gone ? makeStatus('Gone', status.message) : status })}\n`);
  lines.flush();
  await lines.drained();
}
