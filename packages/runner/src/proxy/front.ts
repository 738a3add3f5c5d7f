// The port proxy's native front (docs/design/0008, proxy-front.c): a C relay on the proxy's public address that
// relays plain requests to the apps itself and hands every other connection to the Node proxy over a unix socket,
// with a PROXY protocol v1 line naming the client. This module compiles and runs it, passes its questions (which
// environment and address a Host and session cookie may reach) to the runner's answer (front-bridge.ts) and reads
// the hand-off line.
import { dirname } from 'node:path';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type Logger, errorMessage } from '@warren/base';
import { compileCached, locateCSource, spawnLogged } from '../linux/index.js';

/** What the runner answers the front for a Host and the session cookie values of a request. */
export type FrontAnswer =
  | {
      kind: 'grant';
      /** How long the front may reuse the answer for the same Host and values, in ms (≥ 1). */
      ttlMs: number;
      environmentId: string;
      port: number;
      /** The app's address: the environment's veth address, or (loopback-only ports) its process's namespace. */
      target: { address: string } | { pid: number };
    }
  | { kind: 'deny'; ttlMs: number };

/** Options of {@link startProxyFront}. */
export interface ProxyFrontOptions {
  /** The compiled front ({@link ensureProxyFront}). */
  binary: string;
  /** The public address to listen on; port 0 picks a free one. */
  host: string;
  port: number;
  /** The unix socket where the Node proxy takes handed-off connections. */
  handOffPath: string;
  /** X-Forwarded-Proto. */
  proto: 'http' | 'https';
  /**
   * Decides a request the front asks about; a rejection is answered as a deny that is not reused.
   * @param host the Host field as sent; @param sessionValues values of Warren's cookie, in request order.
   */
  decide(host: string, sessionValues: string[]): Promise<FrontAnswer>;
  /** An environment had relayed requests (at most once per second per environment). */
  onActivity(environmentId: string): void;
  /** The front exited while running (not after {@link ProxyFront.close}): the caller serves the address itself. */
  onExit(error: Error): void;
  logger: Logger;
}

/** A running front. */
export interface ProxyFront {
  /** The bound port. */
  port: number;
  /** Makes the front forget every answer (an environment's phase or port visibility changed). */
  flush(): void;
  /** Stops the front: it stops listening and closes its connections. */
  close(): Promise<void>;
}

/**
 * The front could not start or stopped: `code` is errno-like, as on Node's own socket errors (`EADDRINUSE`,
 * `EACCES`, `EADDRNOTAVAIL` from bind(2)), or `ENOENT` (no source), `ECOMPILE`, `ESPAWN`, `EEXIT`.
 */
export class ProxyFrontError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ProxyFrontError';
  }
}

/**
 * Returns the compiled front, `<cacheDir>/warren-proxy-front-<hash>`, compiling `proxy-front.c` with `cc -O2
 * -fstack-protector-strong -D_FORTIFY_SOURCE=2` on first use (linux/c-program.ts compileCached).
 * @throws {ProxyFrontError} when the source is missing or the compiler fails (cause: the ExecError).
 */
export async function ensureProxyFront(cacheDir: string, logger?: Logger): Promise<string> {
  const { found, candidates } = locateCSource('proxy-front.c', dirname(fileURLToPath(import.meta.url)));
  if (!found) throw new ProxyFrontError(`proxy-front.c not found (looked in ${candidates.join(', ')})`, 'ENOENT');
  try {
    // It parses what any client sends: compiled with the stack protector and fortified libc calls as well.
    return await compileCached({
      sourcePath: found,
      cacheDir,
      name: 'warren-proxy-front',
      flags: ['-O2', '-fstack-protector-strong', '-D_FORTIFY_SOURCE=2'],
      ...(logger ? { logger } : {}),
    });
  } catch (error) {
    throw new ProxyFrontError(`compiling ${found} failed: ${errorMessage(error)}`, 'ECOMPILE', { cause: error });
  }
}

/**
 * Starts the front and waits until it listens.
 * The line protocol (stdin/stdout) is documented at the top of proxy-front.c.
 * @throws {ProxyFrontError} when it cannot bind (`code` from the front, e.g. `EADDRINUSE`) or exits at once.
 */
export async function startProxyFront(options: ProxyFrontOptions): Promise<ProxyFront> {
  const logger = options.logger;
  const child = spawnLogged([options.binary, options.host, String(options.port), options.handOffPath, options.proto], {
    stdio: ['pipe', 'pipe', 'pipe'],
    logger,
  });
  if (!child.stdin || !child.stdout || !child.stderr) throw new ProxyFrontError('port proxy front started without pipes', 'ESPAWN');
  const { stdin, stdout, stderr } = child;
  let closing = false;
  let listening = false;
  const send = (line: string): void => {
    if (!stdin.destroyed) stdin.write(`${line}\n`);
  };
  stdin.on('error', () => {}); // the exit handler reports a dead front
  createInterface({ input: stderr }).on('line', (line) => logger.warn({ front: line }, 'port proxy front'));

  const answer = (qid: string, host: string, values: string[]): void => {
    options.decide(host, values).then(
      (decided) => {
        if (decided.kind === 'deny') return send(`deny ${qid} ${Math.max(0, Math.round(decided.ttlMs))}`);
        const target = 'pid' in decided.target ? `ns ${decided.target.pid}` : `tcp ${decided.target.address}`;
        send(`grant ${qid} ${Math.max(1, Math.round(decided.ttlMs))} ${decided.environmentId} ${decided.port} ${target}`);
      },
      (error: unknown) => {
        logger.warn({ host, error: errorMessage(error) }, 'port proxy front: deciding a request failed');
        send(`deny ${qid} 0`);
      },
    );
  };

  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: stdout });
    lines.on('line', (line) => {
      const fields = line.split(' ');
      switch (fields[0] ?? '') {
        case 'ask':
          return answer(fields[1] ?? '', fields[2] ?? '', fields.slice(3));
        case 'activity':
          return options.onActivity(fields[1] ?? '');
        case 'listening':
          listening = true;
          return resolve(Number(fields[1]));
        case 'failed':
          return reject(
            new ProxyFrontError(
              `port proxy front cannot listen on ${options.host}:${options.port}: ${fields.slice(2).join(' ')}`,
              fields[1] ?? 'EIO',
            ),
          );
        default:
          logger.warn({ line }, 'port proxy front: unknown report');
      }
    });
    child.on('error', (error) =>
      reject(new ProxyFrontError(`port proxy front did not start: ${error.message}`, 'ESPAWN', { cause: error })),
    );
    child.on('exit', (code, signal) => {
      const error = new ProxyFrontError(`port proxy front exited (${signal ?? `status ${code}`})`, 'EEXIT');
      if (!listening) return reject(error);
      if (!closing) options.onExit(error);
    });
  });
  logger.debug({ port, pid: child.pid }, 'port proxy front listening');
  return {
    port,
    flush: () => send('flush'),
    async close() {
      closing = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      stdin.end();
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Longest PROXY v1 line, CRLF included (proxy-protocol.txt §2.1). */
const PROXY_LINE_MAX = 107;

/**
 * Reads the PROXY protocol v1 line the front sends first on a handed-off connection (`PROXY TCP4|TCP6 <source>
 * <destination> <source port> <destination port>\r\n`, proxy-protocol.txt §2.1), then gives the socket on, paused,
 * with the bytes after the line put back in front.
 * @param then receives the socket and the client's address (the source); a socket without a valid line is destroyed.
 */
export function readProxyLine(socket: Socket, then: (socket: Socket, remoteAddress: string) => void): void {
  let buffered: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const end = buffered.indexOf('\r\n');
    if (end < 0) {
      if (buffered.length > PROXY_LINE_MAX) socket.destroy();
      return;
    }
    socket.off('data', onData);
    socket.pause();
    const fields = buffered.toString('latin1', 0, end).split(' ');
    if (end + 2 > PROXY_LINE_MAX || fields.length !== 6 || fields[0] !== 'PROXY' || (fields[1] !== 'TCP4' && fields[1] !== 'TCP6')) {
      socket.destroy();
      return;
    }
    if (end + 2 < buffered.length) socket.unshift(buffered.subarray(end + 2));
    then(socket, fields[2]!);
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
}
