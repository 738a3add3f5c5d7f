// Parsing of /proc/net/tcp{,6}: LISTEN sockets only, addresses decoded, loopback-only binds not reachable.
import { describe, expect, it } from 'vitest';
import { loopbackOnly, parseProcNetTcp, reachableFromHost } from './listening.js';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0
   2: 0600580A:1F90 0500580A:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 100 0 0 10 0
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 00000000:00000000
   2: 0000000000000000FFFF00000100007F:138A 00000000000000000000000000000000:0000 0A 00000000:00000000
`;

describe('parseProcNetTcp', () => {
  it('returns LISTEN sockets with decoded IPv4 addresses', () => {
    expect(parseProcNetTcp(TCP)).toEqual([
      { address: '0.0.0.0', port: 8080 },
      { address: '127.0.0.1', port: 3000 },
    ]);
  });

  it('decodes IPv6, loopback and IPv4-mapped addresses', () => {
    expect(parseProcNetTcp(TCP6)).toEqual([
      { address: '0:0:0:0:0:0:0:0', port: 5000 },
      { address: '0:0:0:0:0:0:0:1', port: 5001 },
      { address: '::ffff:127.0.0.1', port: 5002 },
    ]);
  });

  it('keeps wildcard and routable binds, drops loopback ones, and skips malformed lines', () => {
    const reachable = [...parseProcNetTcp(TCP), ...parseProcNetTcp(TCP6)]
      .filter((socket) => reachableFromHost(socket.address))
      .map((socket) => socket.port);
    expect(reachable).toEqual([8080, 5000]);
    expect(parseProcNetTcp('header\ngarbage line\n  0: zz 0A\n')).toEqual([]);
  });

  it('tells loopback-only ports from ports reachable on the veth address', () => {
    const sockets = [...parseProcNetTcp(TCP), ...parseProcNetTcp(TCP6), { address: '127.0.0.1', port: 5000 }];
    expect(loopbackOnly(sockets, 3000)).toBe(true);
    expect(loopbackOnly(sockets, 5001)).toBe(true);
    expect(loopbackOnly(sockets, 8080)).toBe(false);
    // Bound to both loopback and the wildcard: the veth address reaches it.
    expect(loopbackOnly(sockets, 5000)).toBe(false);
    expect(loopbackOnly(sockets, 9999)).toBe(false);
  });
});
