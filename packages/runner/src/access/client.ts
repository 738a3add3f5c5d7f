// Client side of the runner's access API, for the CLI (and tests): run a command in an environment,
// follow its lifecycle log, read its usage. The caller first gets an AccessGrant from the server.
import type { Readable, Writable } from 'node:stream';
import {
  type AccessGrant,
  ApiError,
  ExecChannel,
  type ExecStart,
  type EnvironmentStats,
  EnvironmentStatsSchema,
  type Reason,
  makeStatus,
} from '@warren/api';
import { WebSocket as NodeWebSocket } from 'ws';
import { errorFromBody } from './error-body.js';

/** Options of {@link execInEnvironment}. */
export interface ExecInEnvironmentOptions {
  /** Bytes forwarded to the process's stdin; its end sends `stdin-eof`. Without it stdin is closed at once. */
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  tty?: boolean;
  cols?: number;
  rows?: number;
  /** Extra `NAME=value` entries. */
  env?: string[];
  cwd?: string;
  user?: string;
  /** WebSocket implementation (default: the `ws` package). */
  WebSocket?: typeof NodeWebSocket;
  signal?: AbortSignal;
}

function accessUrl(grant: AccessGrant, what: 'exec' | 'logs' | 'stats', query: Record<string, string> = {}): URL {
  const url = new URL(`${grant.endpoint.replace(/\/+$/, '')}/v1/environments/${encodeURIComponent(grant.environmentId)}/${what}`);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  return url;
}

/**
 * Runs `argv` in the grant's environment over the exec WebSocket (api access.ts protocol) and streams
 * stdout and stderr to the given writables.
 * @returns the process's exit code.
 * @throws {ApiError} with the runner's Status when the token is refused (401/403), the environment is not
 *   running (409), or the runner reports an error frame; `ServiceUnavailable` when the runner is unreachable
 *   or the connection drops before an exit frame.
 */
export function execInEnvironment(grant: AccessGrant, argv: string[], options: ExecInEnvironmentOptions): Promise<number> {
  const WebSocketImpl = options.WebSocket ?? NodeWebSocket;
  const url = accessUrl(grant, 'exec');
  return new Promise<number>((resolve, reject) => {
    const websocket = new WebSocketImpl(url, { headers: { authorization: `Bearer ${grant.token}` } });
    let settled = false;
    const settle = (error: Error | undefined, code?: number) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      options.stdin?.off('data', onStdin);
      options.stdin?.off('end', onStdinEnd);
      if (error) reject(error);
      else resolve(code ?? 0);
    };
    const onAbort = () => {
      websocket.terminate();
      settle(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted'));
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const onStdin = (chunk: Buffer | string) => {
      if (websocket.readyState !== NodeWebSocket.OPEN) return;
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      websocket.send(Buffer.concat([Buffer.of(ExecChannel.stdin), bytes]));
    };
    const onStdinEnd = () => {
      if (websocket.readyState === NodeWebSocket.OPEN) websocket.send(JSON.stringify({ type: 'stdin-eof' }));
    };

    websocket.on('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => settle(errorFromBody(response.statusCode ?? 500, body)));
    });
    websocket.on('error', (error) =>
      settle(new ApiError(makeStatus('ServiceUnavailable', `cannot reach the runner at ${grant.endpoint}: ${error.message}`))),
    );
    websocket.on('open', () => {
      const start: ExecStart = {
        type: 'start',
        argv,
        tty: options.tty ?? false,
        ...(options.cols ? { cols: options.cols } : {}),
        ...(options.rows ? { rows: options.rows } : {}),
        ...(options.env ? { env: options.env } : {}),
        ...(options.cwd ? { cwd: options.cwd } : {}),
        ...(options.user ? { user: options.user } : {}),
      };
      websocket.send(JSON.stringify(start));
      if (options.stdin) {
        options.stdin.on('data', onStdin);
        options.stdin.on('end', onStdinEnd);
      } else {
        onStdinEnd();
      }
    });
    websocket.on('message', (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      if (isBinary) {
        const channel = bytes[0];
        const payload = bytes.subarray(1);
        if (channel === ExecChannel.stdout) options.stdout.write(payload);
        else if (channel === ExecChannel.stderr) options.stderr.write(payload);
        return;
      }
      const control = JSON.parse(bytes.toString('utf8')) as { type: string; code?: number; reason?: Reason; message?: string };
      if (control.type === 'exit') settle(undefined, control.code ?? 0);
      else if (control.type === 'error')
        settle(new ApiError(makeStatus(control.reason ?? 'InternalError', control.message ?? 'exec failed')));
    });
    websocket.on('close', () =>
      settle(
        new ApiError(
          makeStatus('ServiceUnavailable', `the connection to the runner at ${grant.endpoint} closed before the command exited`),
        ),
      ),
    );
  });
}

/** Options of {@link followLogs}. */
export interface FollowLogsOptions {
  /** Keep streaming appended output until `signal` aborts. */
  follow?: boolean;
  /** Receives the log text as it arrives. */
  write: (chunk: string) => void;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/**
 * Streams the environment's lifecycle log (`GET {endpoint}/v1/environments/{id}/logs[?follow=true]`).
 * Resolves when the runner ends the stream (at once without `follow`) or when `signal` aborts.
 * @throws {ApiError} with the runner's Status for a refused token (401/403) or `ServiceUnavailable`
 *   when the runner is unreachable.
 */
export async function followLogs(grant: AccessGrant, options: FollowLogsOptions): Promise<void> {
  const fetchImpl = options.fetch ?? fetch;
  let response: Response;
  try {
    response = await fetchImpl(accessUrl(grant, 'logs', options.follow ? { follow: 'true' } : {}), {
      headers: { authorization: `Bearer ${grant.token}` },
      signal: options.signal,
    });
  } catch (error) {
    if (options.signal?.aborted) return;
    throw new ApiError(makeStatus('ServiceUnavailable', `cannot reach the runner at ${grant.endpoint}: ${(error as Error).message}`));
  }
  if (!response.ok) throw errorFromBody(response.status, await response.text().catch(() => ''));
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const chunk = (await reader.read()) as { value?: Uint8Array; done: boolean };
      if (chunk.done) break;
      options.write(decoder.decode(chunk.value, { stream: true }));
    }
  } catch (error) {
    if (!options.signal?.aborted) throw error;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Options of {@link fetchStats}. */
export interface FetchStatsOptions {
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/**
 * Reads the environment's usage now (`GET {endpoint}/v1/environments/{id}/stats`, api stats.ts).
 * @throws {ApiError} with the runner's Status for a refused token (401/403) or an environment that is not
 *   running (409 `EnvironmentNotRunning`); `ServiceUnavailable` when the runner is unreachable.
 */
export async function fetchStats(grant: AccessGrant, options: FetchStatsOptions = {}): Promise<EnvironmentStats> {
  const fetchImpl = options.fetch ?? fetch;
  let response: Response;
  try {
    response = await fetchImpl(accessUrl(grant, 'stats'), {
      headers: { authorization: `Bearer ${grant.token}` },
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    throw new ApiError(makeStatus('ServiceUnavailable', `cannot reach the runner at ${grant.endpoint}: ${(error as Error).message}`));
  }
  const body = await response.text().catch(() => '');
  if (!response.ok) throw errorFromBody(response.status, body);
  return EnvironmentStatsSchema.parse(JSON.parse(body));
}
