// Client side of the terminal WebSocket (api access.ts TerminalControl), for the CLI and tests: connects
// stdin/stdout to a terminal session in an environment, reconnecting to a session by id.
import type { Readable, Writable } from 'node:stream';
import { type AccessGrant, ApiError, ExecChannel, type TerminalControl, makeStatus } from '@warren/api';
import { WebSocket as NodeWebSocket } from 'ws';
import { errorFromBody } from './error-body.js';

/** Options of {@link openTerminal}. */
export interface OpenTerminalOptions {
  /** Input bytes (keystrokes); its end does not end the session (use `terminate`). */
  stdin?: Readable;
  /** Receives terminal output: first the replayed scrollback (`replayBytes` of it), then live output. */
  stdout: Writable;
  /** Reattach to this session (from an earlier connection's `session`) instead of starting a new one. */
  session?: string;
  /** Window size; on reconnect it is applied to the session. */
  cols?: number;
  rows?: number;
  /** WebSocket implementation (default: the `ws` package). */
  WebSocket?: typeof NodeWebSocket;
}

/** How a terminal connection ended. */
export type TerminalEnd =
  /** The shell exited; the session is gone. */
  | { kind: 'exit'; code: number }
  /** The connection closed (dropped, closed by us, or taken over) while the session lives on for a reconnect. */
  | { kind: 'detached'; closeCode: number };

/** An open terminal connection. */
export interface TerminalConnection {
  /** Session id: pass it as `session` to reconnect. */
  session: string;
  /** True when this connection reattached to an existing session. */
  resumed: boolean;
  /** Bytes of scrollback replayed at the start of `stdout`. */
  replayBytes: number;
  /** Sends a window size change. */
  resize(cols: number, rows: number): void;
  /** Ends the session now (the shell is killed) instead of keeping it for a reconnect. */
  terminate(): void;
  /** Closes this connection; the session stays for its grace period. */
  close(): void;
  /** Resolves when the connection ends. */
  done: Promise<TerminalEnd>;
}

function terminalUrl(grant: AccessGrant, options: OpenTerminalOptions): URL {
  const url = new URL(`${grant.endpoint.replace(/\/+$/, '')}/v1/environments/${encodeURIComponent(grant.environmentId)}/terminal`);
  if (options.session) url.searchParams.set('session', options.session);
  if (options.cols && options.rows) {
    url.searchParams.set('cols', String(options.cols));
    url.searchParams.set('rows', String(options.rows));
  }
  return url;
}

/**
 * Opens a terminal in the grant's environment (`GET {endpoint}/v1/environments/{id}/terminal`, WebSocket).
 * @returns once the runner has sent the session frame; output then flows to `stdout` and input from `stdin`.
 * @throws {ApiError} with the runner's Status: 401 bad or expired token, 403 another environment or runner,
 *   404 `TerminalSessionNotFound` for an unknown or ended session, 409 environment not running;
 *   `ServiceUnavailable` when the runner is unreachable or closes before the session frame.
 */
export function openTerminal(grant: AccessGrant, options: OpenTerminalOptions): Promise<TerminalConnection> {
  const WebSocketImpl = options.WebSocket ?? NodeWebSocket;
  return new Promise<TerminalConnection>((resolve, reject) => {
    const websocket = new WebSocketImpl(terminalUrl(grant, options), { headers: { authorization: `Bearer ${grant.token}` } });
    let opened = false;
    let ended: TerminalEnd | undefined;
    let finish: (end: TerminalEnd) => void = () => {};
    const done = new Promise<TerminalEnd>((resolveDone) => (finish = resolveDone));
    const fail = (error: Error) => {
      if (!opened) {
        opened = true;
        reject(error);
      }
    };
    const sendControl = (control: TerminalControl) => {
      if (websocket.readyState === NodeWebSocket.OPEN) websocket.send(JSON.stringify(control));
    };
    const onStdin = (chunk: Buffer | string) => {
      if (websocket.readyState !== NodeWebSocket.OPEN) return;
      websocket.send(Buffer.concat([Buffer.of(ExecChannel.stdin), typeof chunk === 'string' ? Buffer.from(chunk) : chunk]));
    };

    websocket.on('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => fail(errorFromBody(response.statusCode ?? 500, body)));
    });
    websocket.on('error', (error) =>
      fail(new ApiError(makeStatus('ServiceUnavailable', `cannot reach the runner at ${grant.endpoint}: ${error.message}`))),
    );
    websocket.on('message', (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        if (bytes[0] === ExecChannel.stdout) options.stdout.write(bytes.subarray(1));
        return;
      }
      let control: TerminalControl;
      try {
        control = JSON.parse(bytes.toString('utf8')) as TerminalControl;
      } catch {
        return;
      }
      if (control.type === 'session' && !opened) {
        opened = true;
        options.stdin?.on('data', onStdin);
        resolve({
          session: control.session,
          resumed: control.resumed,
          replayBytes: control.replayBytes,
          resize: (cols, rows) => sendControl({ type: 'resize', cols, rows }),
          terminate: () => sendControl({ type: 'terminate' }),
          close: () => websocket.close(1000),
          done,
        });
      } else if (control.type === 'exit') {
        ended = { kind: 'exit', code: control.code };
      } else if (control.type === 'error') {
        fail(new ApiError(makeStatus(control.reason, control.message)));
      }
    });
    websocket.on('close', (code) => {
      options.stdin?.off('data', onStdin);
      fail(
        new ApiError(makeStatus('ServiceUnavailable', `the runner at ${grant.endpoint} closed the terminal connection before it started`)),
      );
      finish(ended ?? { kind: 'detached', closeCode: code });
    });
  });
}
