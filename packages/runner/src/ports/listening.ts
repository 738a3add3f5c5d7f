// Listening TCP sockets of an environment (loopback-only ones included), read from /proc/<pid>/net/tcp{,6}: the view of the network
// namespace that process lives in (proc(5) "/proc/net/tcp"), so no setns(2) or helper process is needed.
import { readFile } from 'node:fs/promises';

/** A listening socket: its local address (IPv4 dotted or IPv6 colon form) and port. */
export interface ListeningSocket {
  address: string;
  port: number;
}

/** TCP state `LISTEN` in /proc/net/tcp (include/net/tcp_states.h: TCP_LISTEN = 10). */
const TCP_LISTEN = '0A';

/**
 * Parses the text of /proc/net/tcp or /proc/net/tcp6 and returns the sockets in state LISTEN (0A).
 * Addresses there are hex in host byte order per 32-bit word (little-endian on x86 and arm64), e.g.
 * `0100007F:1F90` is 127.0.0.1:8080. Malformed lines are skipped.
 */
export function parseProcNetTcp(text: string): ListeningSocket[] {
  const sockets: ListeningSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || fields[3] !== TCP_LISTEN) continue;
    const [hexAddress, hexPort] = (fields[1] ?? '').split(':');
    if (!hexAddress || !hexPort) continue;
    const port = Number.parseInt(hexPort, 16);
    const address = hexAddress.length === 8 ? ipv4(hexAddress) : hexAddress.length === 32 ? ipv6(hexAddress) : undefined;
    if (address === undefined || !Number.isInteger(port) || port <= 0) continue;
    sockets.push({ address, port });
  }
  return sockets;
}

/** One little-endian 32-bit word as 4 bytes in network order. */
function wordBytes(hex: string): number[] {
  const bytes = [0, 2, 4, 6].map((offset) => Number.parseInt(hex.slice(offset, offset + 2), 16));
  return bytes.reverse();
}

function ipv4(hex: string): string {
  return wordBytes(hex).join('.');
}

function ipv6(hex: string): string {
  const bytes = [0, 8, 16, 24].flatMap((offset) => wordBytes(hex.slice(offset, offset + 8)));
  const groups: string[] = [];
  for (let index = 0; index < 16; index += 2) groups.push((((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)).toString(16));
  // IPv4-mapped (::ffff:a.b.c.d) in its usual form; otherwise uncompressed groups (only compared, never shown).
  if (groups.slice(0, 5).every((group) => group === '0') && groups[5] === 'ffff') return `::ffff:${bytes.slice(12).join('.')}`;
  return groups.join(':');
}

/**
 * Whether a socket bound to `address` accepts connections arriving on the environment's veth address:
 * wildcard binds (0.0.0.0, ::) and non-loopback addresses do; loopback binds (127.0.0.0/8, ::1) do not, so
 * they are reached from inside the namespace instead (ports/loopback.ts).
 */
export function reachableFromHost(address: string): boolean {
  if (address.startsWith('127.') || address.startsWith('::ffff:127.')) return false;
  if (address === '0:0:0:0:0:0:0:1') return false;
  return true;
}

/** Reads the listening sockets of the network namespace of process `pid`; empty when the process is gone. */
export async function listListeningSockets(pid: number): Promise<ListeningSocket[]> {
  const read = (file: string) =>
    readFile(`/proc/${pid}/net/${file}`, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ESRCH') return '';
      throw error;
    });
  const [tcp, tcp6] = await Promise.all([read('tcp'), read('tcp6')]);
  return [...parseProcNetTcp(tcp), ...parseProcNetTcp(tcp6)];
}

/**
 * Lists the TCP ports listening in the network namespace of process `pid`, loopback-only ones included (the
 * proxy and `ssh -L` reach those from inside the namespace, ports/loopback.ts), sorted and without duplicates.
 * @returns an empty list when the process is gone (ENOENT/ESRCH); other read errors are thrown.
 */
export async function listListeningPorts(pid: number): Promise<number[]> {
  const ports = new Set((await listListeningSockets(pid)).map((socket) => socket.port));
  return [...ports].sort((a, b) => a - b);
}

/**
 * Whether `port` has listeners and all of them are bound to loopback, so the veth address does not reach it
 * (see {@link reachableFromHost}).
 */
export function loopbackOnly(sockets: readonly ListeningSocket[], port: number): boolean {
  const listeners = sockets.filter((socket) => socket.port === port);
  return listeners.length > 0 && listeners.every((socket) => !reachableFromHost(socket.address));
}
