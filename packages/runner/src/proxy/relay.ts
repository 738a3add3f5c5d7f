// The port proxy's fast path: a byte-level HTTP/1.1 relay with one upstream connection per client connection (TCP
// to the environment's address, or a helper's stream into its namespace for a loopback-only port).
// Request heads are parsed strictly (request-head.ts), routed and authorised on every request, and forwarded with
// Warren's cookie removed and X-Forwarded-* added; request bodies are forwarded by Content-Length, responses are
// relayed as bytes, unparsed. Anything unusual (and every refusal) goes to the slow path, the HTTP server in
// slow-path.ts, with the bytes not yet forwarded put back in front of the socket.
import { type Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { type Logger, errorMessage } from '@warren/base';
import { HEAD_END, type RequestHead, parseRequestHead } from './request-head.js';

/** Largest request head the fast path buffers, in bytes (Node's default `maxHeaderSize`); longer ones go to the slow path. */
export const MAX_HEAD_BYTES = 16 * 1024;
/** How long a new connection may take to send its first request head, in ms (Node's default `headersTimeout`). */
const HEAD_TIMEOUT_MS = 60_000;
/** How long a connection handed to the slow path waits for the app to finish earlier responses, in ms. */
const HAND_OFF_WAIT_MS = 10_000;
/** How long a client may keep its side open after the app closed the connection, in ms. */
const LINGER_MS = 5_000;

/** A request the fast path may relay, as decided by {@link RelayHooks.admit}. */
export interface RelayAdmission {
  /** The environment the request reaches; a connection stays with the environment and port of its first request. */
  environmentId: string;
  port: number;
  /** Whether the request's Cookie field carried Warren's cookie, so it must be replaced by `cookie`. */
  stripCookie: boolean;
  /** The Cookie value without Warren's cookie; undefined drops the field. Read only with `stripCookie`. */
  cookie: string | undefined;
}

/**
 * Where the relay connects for an admitted connection: a TCP address, or `open`, which returns a stream at once
 * that emits `connect` when the app accepted the connection and fails (or ends) without data when nothing listens
 * (ports/loopback.ts connectInNamespace). Either way the connection is the client connection's alone and lives as
 * long as it does; a failure before `connect` hands the request to the slow path, which answers its 502 page.
 */
export type RelayTarget = { host: string; port: number } | { open: () => Duplex };

/** What the relay needs from the proxy (server.ts composes them: admission.ts, targets.ts, slow-path.ts). */
export interface RelayHooks {
  /**
   * Routes and authorises a request head, synchronously, exactly as the slow path would.
   * @returns undefined to hand the request to the slow path (refusals, token exchanges, path form, ...).
   */
  admit(head: RequestHead): RelayAdmission | undefined;
  /** Where the app of an admitted first request listens; undefined (or a rejection) hands it to the slow path. */
  target(admission: RelayAdmission): Promise<RelayTarget | undefined>;
  /** Gives a connection to the slow path; `buffered` (bytes read but not forwarded) goes back in front of it. */
  handOff(socket: Socket, buffered: Buffer | undefined): void;
  /** Called for every relayed request. */
  onActivity(environmentId: string): void;
  /** X-Forwarded-Proto: `http`, or `https` behind a TLS front. */
  proto: string;
  logger: Logger;
}

/**
 * - `head`: reading a request head (or idle between requests);
 * - `body`: forwarding `remaining` bytes of a request body (RFC 9112 §6.2);
 * - `connecting`: the first request is admitted, its app is being looked up and connected (client paused);
 * - `draining`: a request needs the slow path; the app finishes earlier responses before the hand-off (client paused);
 * - `done`: handed off, closed, or the app closed its side.
 */
type Phase = 'head' | 'body' | 'connecting' | 'draining' | 'done';

/**
 * One client connection on the fast path. Created for every accepted connection; it either relays the connection
 * to the app for its whole life, or hands it to the slow path at the first request it cannot relay.
 *
 * Message framing follows RFC 9112: a request head ends at the first empty line (§2.1), its body is exactly
 * Content-Length bytes or empty (§6.3); requests are forwarded in order, so pipelining (§9.3.2) works too.
 * Responses are not parsed: the connection to the app is the client's alone, so the client frames them.
 * Half-close: the client's end of input ends the app's, and the app's end ends the client's. Errors on either side
 * destroy both. Backpressure: a side that cannot take more pauses the other.
 */
export class RelayConnection {
  private phase: Phase = 'head';
  /** Bytes read from the client and not yet forwarded. */
  private buffer: Buffer | undefined;
  /** Where the search for the end of the head resumes in `buffer`. */
  private scanned = 0;
  /** Body bytes of the current request still to forward. */
  private remaining = 0;
  private upstream: Duplex | undefined;
  private connected = false;
  /** Whether anything was written to `upstream` (else a hand-off need not wait for it). */
  private used = false;
  /** The Host, environment and port of the first request; later requests must name the same. */
  private host: string | undefined;
  private environmentId: string | undefined;
  private port: number | undefined;
  /** `x-forwarded-*` field lines and the empty line, appended to heads that need no other change. */
  private suffix: Buffer | undefined;
  private readonly remoteAddress: string;
  private clientWaitsForDrain = false;
  private upstreamWaitsForDrain = false;
  private handOffTimer: NodeJS.Timeout | undefined;
  /** The client ended its side (no more requests; its bytes can no longer be put back for a hand-off). */
  private clientEnded = false;
  private finished = false;

  /**
   * Starts relaying `client` (a socket accepted with `allowHalfOpen: true`).
   * @param onDone called once when the relay no longer owns the client (closed or handed off).
   * @param remoteAddress the client's address for X-Forwarded-For: the socket's peer, or for a connection the
   *   native front handed over, the address its PROXY line named (front.ts).
   */
  constructor(
    private readonly client: Socket,
    private readonly hooks: RelayHooks,
    private readonly onDone: (relay: RelayConnection) => void,
    remoteAddress: string = client.remoteAddress ?? '',
  ) {
    this.remoteAddress = remoteAddress;
    client.on('data', this.onClientData);
    client.on('end', this.onClientEnd);
    client.on('drain', this.onClientDrain);
    client.on('error', this.onError);
    client.on('close', this.onClientClose);
    client.on('timeout', this.onTimeout);
    client.setTimeout(HEAD_TIMEOUT_MS);
  }

  /** Ends both connections at once (proxy shutdown). */
  destroy(): void {
    if (this.finished) return;
    this.finish();
    this.phase = 'done';
    this.client.destroy();
    this.upstream?.destroy();
  }

  private readonly onClientData = (chunk: Buffer): void => {
    try {
      if (this.phase === 'body' && this.buffer === undefined && chunk.length <= this.remaining) {
        this.remaining -= chunk.length;
        if (this.remaining === 0) this.phase = 'head';
        this.toUpstream(chunk);
        return;
      }
      if (this.phase === 'done') return;
      this.buffer = this.buffer === undefined ? chunk : Buffer.concat([this.buffer, chunk]);
      this.pump();
    } catch (error) {
      this.hooks.logger.warn({ error: errorMessage(error) }, 'proxy relay failed');
      this.destroy();
    }
  };

  /** Forwards what `buffer` holds: body bytes, then request heads one by one, until it is empty or incomplete. */
  private pump(): void {
    while (this.buffer !== undefined) {
      const buffer = this.buffer;
      if (this.phase === 'body') {
        if (buffer.length <= this.remaining) {
          this.remaining -= buffer.length;
          this.buffer = undefined;
          if (this.remaining === 0) this.phase = 'head';
          this.toUpstream(buffer);
          return;
        }
        this.buffer = buffer.subarray(this.remaining);
        this.toUpstream(buffer.subarray(0, this.remaining));
        this.remaining = 0;
        this.phase = 'head';
        continue;
      }
      if (this.phase !== 'head') return;
      const end = buffer.indexOf(HEAD_END, this.scanned);
      if (end < 0) {
        if (buffer.length > MAX_HEAD_BYTES) return this.toSlowPath();
        this.scanned = Math.max(0, buffer.length - 3);
        return;
      }
      this.scanned = 0;
      const length = end + HEAD_END.length;
      const head = length <= MAX_HEAD_BYTES ? parseRequestHead(buffer, length) : undefined;
      const admission = head !== undefined && (this.host === undefined || head.host === this.host) ? this.admit(head) : undefined;
      if (head === undefined || admission === undefined) return this.toSlowPath();
      if (this.upstream === undefined) return this.open(head, admission);
      if (admission.environmentId !== this.environmentId || admission.port !== this.port) return this.toSlowPath();
      this.buffer = length < buffer.length ? buffer.subarray(length) : undefined;
      this.remaining = head.contentLength;
      this.phase = this.remaining > 0 ? 'body' : 'head';
      this.toUpstream(this.headFor(buffer, head, admission));
      this.hooks.onActivity(admission.environmentId);
    }
  }

  private admit(head: RequestHead): RelayAdmission | undefined {
    try {
      return this.hooks.admit(head);
    } catch (error) {
      this.hooks.logger.warn({ error: errorMessage(error) }, 'proxy fast path admission failed');
      return undefined;
    }
  }

  /** The head to send: the client's bytes plus X-Forwarded-* when nothing else changes, else a rewrite. */
  private headFor(buffer: Buffer, head: RequestHead, admission: RelayAdmission): Buffer {
    if (admission.stripCookie || head.forwarded) return rewriteHead(buffer, head, admission, this.remoteAddress, this.hooks.proto);
    const suffix = this.suffix!;
    const kept = head.length - 2;
    const out = Buffer.allocUnsafe(kept + suffix.length);
    buffer.copy(out, 0, 0, kept);
    suffix.copy(out, kept);
    return out;
  }

  /** Looks up and connects the app of the connection's first request; the request stays in `buffer` until then. */
  private open(head: RequestHead, admission: RelayAdmission): void {
    this.phase = 'connecting';
    this.client.pause();
    this.hooks.target(admission).then(
      (target) => {
        if (this.phase !== 'connecting') return;
        if (target === undefined) return this.toSlowPath();
        this.host = head.host;
        this.environmentId = admission.environmentId;
        this.port = admission.port;
        this.suffix = Buffer.from(
          `x-forwarded-for: ${this.remoteAddress}\r\nx-forwarded-host: ${head.host}\r\nx-forwarded-proto: ${this.hooks.proto}\r\n\r\n`,
          'latin1',
        );
        const upstream =
          'open' in target ? target.open() : connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
        this.upstream = upstream;
        upstream.on('connect', this.onUpstreamConnect);
        upstream.on('data', this.onUpstreamData);
        upstream.on('end', this.onUpstreamEnd);
        upstream.on('drain', this.onUpstreamDrain);
        upstream.on('error', this.onUpstreamError);
        upstream.on('close', this.onUpstreamClose);
      },
      (error: unknown) => {
        if (this.phase !== 'connecting') return;
        this.hooks.logger.debug({ error: errorMessage(error) }, 'proxy fast path lookup failed');
        this.toSlowPath();
      },
    );
  }

  private readonly onUpstreamConnect = (): void => {
    if (this.phase !== 'connecting') return;
    this.connected = true;
    this.phase = 'head';
    this.client.setTimeout(0);
    this.client.resume();
    try {
      this.pump();
      if (this.clientEnded && (this.phase as Phase) !== 'done') this.upstream?.end(); // pump() may have changed the phase
    } catch (error) {
      this.hooks.logger.warn({ error: errorMessage(error) }, 'proxy relay failed');
      this.destroy();
    }
  };

  /**
   * Gives the connection to the slow path. When requests were already forwarded, their responses may still be on
   * their way (a pipelining client): the app's input is ended and the hand-off waits for the app to close, so
   * that responses never interleave; after {@link HAND_OFF_WAIT_MS} both sides are closed instead.
   */
  private toSlowPath(): void {
    const upstream = this.upstream;
    if (upstream === undefined || !this.used) {
      upstream?.destroy();
      this.upstream = undefined;
      this.transfer();
      return;
    }
    this.phase = 'draining';
    this.client.pause();
    upstream.end();
    this.handOffTimer = setTimeout(() => this.destroy(), HAND_OFF_WAIT_MS);
  }

  private transfer(): void {
    const client = this.client;
    this.finish();
    this.phase = 'done';
    client.off('data', this.onClientData);
    client.off('end', this.onClientEnd);
    client.off('drain', this.onClientDrain);
    client.off('error', this.onError);
    client.off('close', this.onClientClose);
    client.off('timeout', this.onTimeout);
    client.setTimeout(0);
    const buffered = this.buffer;
    this.buffer = undefined;
    if (client.destroyed) return;
    // Bytes cannot be put back once the stream has ended; such a client has nothing more to say anyway.
    if (this.clientEnded) return void client.destroy();
    this.hooks.handOff(client, buffered);
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.handOffTimer);
    this.onDone(this);
  }

  private toUpstream(chunk: Buffer): void {
    this.used = true;
    if (!this.upstream!.write(chunk) && !this.clientWaitsForDrain) {
      this.clientWaitsForDrain = true;
      this.client.pause();
    }
  }

  private readonly onUpstreamDrain = (): void => {
    if (!this.clientWaitsForDrain) return;
    this.clientWaitsForDrain = false;
    if (this.phase === 'head' || this.phase === 'body') this.client.resume();
  };

  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (!this.client.write(chunk) && !this.upstreamWaitsForDrain) {
      this.upstreamWaitsForDrain = true;
      this.upstream!.pause();
    }
  };

  private readonly onClientDrain = (): void => {
    if (!this.upstreamWaitsForDrain) return;
    this.upstreamWaitsForDrain = false;
    this.upstream?.resume();
  };

  private readonly onUpstreamEnd = (): void => {
    // A helper's stream may end without `connect` when nothing listens (a TCP socket errors instead).
    if (!this.connected && this.phase === 'connecting') return this.connectFailed(new Error('the upstream ended before it connected'));
    if (this.phase === 'draining') {
      this.upstream?.destroy();
      this.upstream = undefined;
      this.transfer();
      return;
    }
    if (this.finished) return;
    // The app closed the connection (e.g. after `Connection: close` or its keep-alive timeout): so does the client.
    this.phase = 'done';
    this.buffer = undefined;
    this.upstream?.end();
    this.client.end();
    // Once our last bytes are with the kernel, a client that keeps its side open is closed after a while.
    this.client.once('finish', () => this.client.setTimeout(LINGER_MS));
  };

  private readonly onUpstreamError = (error: Error): void => {
    if (!this.connected && this.phase === 'connecting') return this.connectFailed(error);
    this.destroy();
  };

  private readonly onUpstreamClose = (): void => {
    if (!this.connected && this.phase === 'connecting') return this.connectFailed(new Error('the upstream closed before it connected'));
    if (!this.finished && !this.client.writableEnded) this.destroy();
  };

  /** Nothing listens (or the address is gone): the slow path connects again and answers its 502 page. */
  private connectFailed(error: Error): void {
    this.hooks.logger.debug({ error: errorMessage(error) }, 'proxy fast path connect failed');
    const upstream = this.upstream;
    this.upstream = undefined;
    upstream?.destroy();
    this.transfer();
  }

  private readonly onClientEnd = (): void => {
    this.clientEnded = true;
    if (this.phase === 'done') return;
    if (this.upstream !== undefined && this.connected) this.upstream.end();
    else if (this.phase !== 'connecting') this.destroy();
  };

  private readonly onClientClose = (): void => this.destroy();
  private readonly onError = (): void => this.destroy();
  private readonly onTimeout = (): void => this.destroy();
}

/**
 * The head for the app when it changes more than X-Forwarded-*: Warren's cookie removed (the Cookie field replaced
 * by `admission.cookie`, or dropped), a client's X-Forwarded-Host and -Proto replaced, and its X-Forwarded-For
 * extended with `remoteAddress`, as the slow path does.
 * @returns the new head, latin1, ending with the empty line.
 */
export function rewriteHead(data: Buffer, head: RequestHead, admission: RelayAdmission, remoteAddress: string, proto: string): Buffer {
  const lines = data.toString('latin1', 0, head.length - 4).split('\r\n');
  const out = [lines[0]!];
  const prior: string[] = [];
  for (let index = 1; index < lines.length; index++) {
    const line = lines[index]!;
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    if (name === 'x-forwarded-for') {
      const value = line.slice(colon + 1).trim();
      if (value !== '') prior.push(value);
    } else if (name === 'cookie' && admission.stripCookie) {
      if (admission.cookie !== undefined) out.push(`cookie: ${admission.cookie}`);
    } else if (name !== 'x-forwarded-host' && name !== 'x-forwarded-proto') {
      out.push(line);
    }
  }
  prior.push(remoteAddress);
  out.push(`x-forwarded-for: ${prior.join(', ')}`, `x-forwarded-host: ${head.host}`, `x-forwarded-proto: ${proto}`, '', '');
  return Buffer.from(out.join('\r\n'), 'latin1');
}
