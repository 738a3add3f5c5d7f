// Connections to ports that listen only on the environment's loopback (127.0.0.1, ::1): the host cannot reach
// them through the veth address, so a helper joins the environment's network namespace (nsenter(1), util-linux)
// and relays one TCP connection to 127.0.0.1:<port> over its stdio (socat(1)).
import type { ChildProcess } from 'node:child_process';
import { Duplex } from 'node:stream';
import { type Logger, WarrenError, silentLogger } from '@warren/base';
import { spawnLogged } from '../linux/index.js';

/** How long the helper may take to report its connection, in ms; then the stream fails. */
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * How long socat keeps relaying one direction after the other one ended (its `-t`, default 0.5 s), in seconds: a
 * client that half-closes after its request still gets a slow answer. It bounds a helper whose stream is never
 * destroyed; the proxy destroys it with its connection.
 */
const HALF_CLOSE_SECONDS = 60;
/**
 * socat's notices (`-d -d`, socat(1) "OPTIONS") once the TCP address is open: "successfully connected from local
 * address ..." and "starting data transfer loop with FDs ...", in socat 1.7 and 1.8.
 */
const CONNECTED_NOTICE = /successfully connected|starting data transfer loop/;

/** The helper could not connect to the port inside the namespace (nothing listens, or the helper failed). */
export class LoopbackConnectError extends WarrenError {
  constructor(
    readonly port: number,
    message: string,
  ) {
    super('ConnectionRefused', 502, message);
  }
}

/**
 * Opens a connection to `127.0.0.1:<port>` inside the network namespace at `namespacePath` (e.g.
 * `/proc/<pid>/ns/net` or `/run/netns/<name>`): one
 * `nsenter --net=<path> -- socat -d -d -t 60 STDIN!!STDOUT,shut-close TCP:127.0.0.1:<port>` per connection (the
 * dual address with `shut-close` ends socat's stdout as soon as the app ends its side; with `STDIO` it would wait
 * for `-t`, socat(1) "ADDRESS OPTIONS"). Needs CAP_SYS_ADMIN (the runner runs as root).
 * @returns a stream at once (writes before the connection are buffered); it emits `connect` once socat reports the
 *   TCP connection open (its `-d -d` notices), like a `net.Socket`. When nothing listens, socat exits 1 and the
 *   stream is destroyed with a {@link LoopbackConnectError} (also when no connection is reported within
 *   {@link CONNECT_TIMEOUT_MS}). Half-closes pass both ways. Destroying the stream kills the helper (SIGKILL), so
 *   no helper outlives its stream.
 */
export function connectInNamespace(namespacePath: string, port: number, logger: Logger = silentLogger): Duplex {
  const argv = [
    'nsenter',
    `--net=${namespacePath}`,
    '--',
    'socat',
    '-d',
    '-d',
    '-t',
    String(HALF_CLOSE_SECONDS),
    'STDIN!!STDOUT,shut-close',
    `TCP:127.0.0.1:${port}`,
  ];
  const child = spawnLogged(argv, {
    stdio: ['pipe', 'pipe', 'pipe'],
    logger,
  });
  return new NamespaceConnection(child, port);
}

/** The helper's stdio as one Duplex: stdout is read, stdin written, stderr watched for the connect notice. */
class NamespaceConnection extends Duplex {
  private connected = false;
  private exitCode: number | null | undefined;
  private stdoutEnded = false;
  private notices = '';
  private readonly timer: NodeJS.Timeout;
  /** Idle timeout in ms set by {@link setTimeout} (0: none), as `net.Socket.timeout`. */
  timeout = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly child: ChildProcess,
    private readonly port: number,
  ) {
    super({ allowHalfOpen: true });
    const stdout = child.stdout!;
    const stderr = child.stderr!;
    this.timer = setTimeout(
      () => this.fail(`the helper reported no connection to port ${port} within ${CONNECT_TIMEOUT_MS} ms`),
      CONNECT_TIMEOUT_MS,
    );
    stdout.on('data', (chunk: Buffer) => {
      this.armIdle();
      if (!this.push(chunk)) stdout.pause();
    });
    stdout.on('end', () => {
      this.stdoutEnded = true;
      this.settleEnd();
    });
    stdout.on('error', (error) => this.destroy(error));
    child.stdin!.on('error', () => {}); // EPIPE once socat exited: reported through the write callbacks.
    stderr.setEncoding('latin1');
    stderr.on('data', (text: string) => {
      if (this.connected) return;
      this.notices = (this.notices + text).slice(-4096);
      if (!CONNECTED_NOTICE.test(this.notices)) return;
      this.connected = true;
      this.notices = '';
      clearTimeout(this.timer);
      this.emit('connect');
      this.settleEnd();
    });
    // 'close', not 'exit': by then stderr is read to its end, so a connect notice is never missed.
    child.on('close', (code) => {
      this.exitCode = code;
      this.settleEnd();
    });
    child.on('error', (error) => this.fail(`the helper for port ${port} could not start: ${error.message}`));
  }

  /** Ends the readable side once socat's output ended: at once when connected, else when its exit code is known. */
  private settleEnd(): void {
    if (!this.stdoutEnded || this.destroyed) return;
    if (!this.connected) {
      if (this.exitCode === undefined) return;
      // Exit 0 without a connect notice: treated as refused too, nothing was relayed.
      return this.fail(`nothing listens on port ${this.port} in the environment (helper exited with ${this.exitCode})`);
    }
    this.push(null);
  }

  private fail(message: string): void {
    if (this.destroyed || this.connected) return;
    this.destroy(new LoopbackConnectError(this.port, message));
  }

  /**
   * Emits `timeout` after `ms` without data either way (0 disables), like `net.Socket.setTimeout`; with the no-op
   * methods below it is enough of a socket for `http.Agent`'s keep-alive pool (which expires idle sockets with it).
   */
  setTimeout(ms: number, callback?: () => void): this {
    this.timeout = ms;
    // As net.Socket.setTimeout: 0 removes the callback again (http.Agent does so for every request on a pooled
    // connection, so adding it each time would pile up listeners).
    if (callback) {
      if (ms === 0) this.removeListener('timeout', callback);
      else this.once('timeout', callback);
    }
    this.armIdle();
    return this;
  }

  /** No-op: TCP keep-alive belongs to socat's own socket. */
  setKeepAlive(): this {
    return this;
  }

  /** No-op: socat relays at once (it has no Nagle buffering of its own). */
  setNoDelay(): this {
    return this;
  }

  /** No-op (the helper process keeps the event loop alive regardless). */
  ref(): this {
    return this;
  }

  /** No-op (see {@link ref}). */
  unref(): this {
    return this;
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    if (this.timeout > 0 && !this.destroyed) this.idleTimer = setTimeout(() => this.emit('timeout'), this.timeout);
  }

  override _read(): void {
    this.child.stdout!.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.armIdle();
    // Before the connection, a failed write (EPIPE: socat exited) is reported by the exit as a LoopbackConnectError.
    this.child.stdin!.write(chunk, (error) => callback(this.connected ? error : null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.child.stdin!.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    this.child.stdin!.destroy();
    this.child.stdout!.destroy();
    this.child.stderr!.destroy();
    callback(error);
  }
}
