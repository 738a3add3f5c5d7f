// A raw HTTP/1.1 client for proxy tests: writes bytes exactly as given and reads responses off the socket itself,
// so tests see what the proxy really sends (keep-alive reuse, framing, early closes) with no client library
// normalising it.
import { type Socket, connect } from 'node:net';

/** One response as read off the wire. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** A client on a raw socket: writes bytes as given and reads responses one by one (Content-Length, chunked or until close). */
export class RawClient {
  /** Received and not yet read, in pieces (joined on demand: a large body would make joining per chunk quadratic). */
  private parts: Buffer[] = [];
  private size = 0;
  private ended = false;
  private wake: () => void = () => {};
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.parts.push(chunk);
      this.size += chunk.length;
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      });
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  private get data(): Buffer {
    if (this.parts.length !== 1) this.parts = [Buffer.concat(this.parts)];
    return this.parts[0]!;
  }

  private set data(rest: Buffer) {
    this.parts = [rest];
    this.size = rest.length;
  }

  send(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** Waits until `ready` is true of the bytes received; false when the connection closed first. */
  private async until(ready: () => boolean): Promise<boolean> {
    while (!ready()) {
      if (this.ended) return false;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return true;
  }

  /** The next response; throws when the connection closes before it is complete. */
  async response(): Promise<Answer> {
    if (!(await this.until(() => this.data.includes('\r\n\r\n'))))
      throw new Error(`connection closed; received ${JSON.stringify(this.data.toString('latin1'))}`);
    const end = this.data.indexOf('\r\n\r\n');
    const [statusLine, ...lines] = this.data.subarray(0, end).toString('latin1').split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(statusLine!.split(' ')[1]);
    this.data = this.data.subarray(end + 4);
    if (status === 101) return { status, headers, body: Buffer.alloc(0) };
    if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length']);
      if (!(await this.until(() => this.size >= length))) throw new Error('connection closed in a body');
      const body = this.data.subarray(0, length);
      this.data = this.data.subarray(length);
      return { status, headers, body };
    }
    if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        if (!(await this.until(() => this.data.includes('\r\n')))) throw new Error('connection closed in a chunk');
        const lineEnd = this.data.indexOf('\r\n');
        const size = parseInt(this.data.subarray(0, lineEnd).toString('latin1'), 16);
        if (!(await this.until(() => this.data.length >= lineEnd + 2 + size + 2))) throw new Error('connection closed in a chunk');
        parts.push(this.data.subarray(lineEnd + 2, lineEnd + 2 + size));
        this.data = this.data.subarray(lineEnd + 2 + size + 2);
        if (size === 0) return { status, headers, body: Buffer.concat(parts) };
      }
    }
    await this.until(() => false);
    const body = this.data;
    this.data = Buffer.alloc(0);
    return { status, headers, body };
  }

  /** Reads `length` raw bytes (e.g. a WebSocket frame). */
  async bytes(length: number): Promise<Buffer> {
    if (!(await this.until(() => this.size >= length))) throw new Error('connection closed');
    const bytes = this.data.subarray(0, length);
    this.data = this.data.subarray(length);
    return bytes;
  }

  close(): void {
    this.socket.destroy();
  }
}
