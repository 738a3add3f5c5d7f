// Where `ssh -L` connections go: to the environment's own address on the runner's host network (the veth of its
// slot), so a port that listens inside the environment is reached without a process per connection; a port that
// listens on the environment's loopback only refuses that, and is reached through a helper in its namespace.
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { WarrenError } from '@warren/base';
import { connectInNamespace } from '../ports/index.js';
import { SlotAllocator, slotInfo } from '../linux/index.js';

/** Destination names that mean "the environment itself" (what `ssh -L 8080:localhost:3000` names). */
const SELF = new Set(['localhost', '127.0.0.1', '::1', '0.0.0.0', '']);

/**
 * Builds the gateway's `connect` for the Linux backend: `localhost` (and its aliases) maps to the environment side
 * address of its slot (`slotInfo(claim + slotOffset).environmentAddress`). Other destinations are refused: reaching
 * them from the runner's host would bypass the environment's network rules.
 * A port bound to the environment's loopback only refuses the veth address (ECONNREFUSED): it is then reached
 * from inside the environment's network namespace (`connectInNamespace`, one helper process per connection).
 * @throws {WarrenError} `Forbidden` for other destinations; `EnvironmentNotRunning` when the environment holds no slot.
 */
export function slotForwarder(dataDir: string, slotOffset: number): (environmentId: string, host: string, port: number) => Promise<Duplex> {
  const slots = new SlotAllocator(dataDir);
  return async (environmentId, host, port) => {
    if (!SELF.has(host.toLowerCase()))
      throw new WarrenError('Forbidden', 403, `forwarding reaches only the environment itself (localhost), not ${host}`);
    const claim = await slots.lookup(environmentId);
    if (claim === undefined)
      throw new WarrenError('EnvironmentNotRunning', 409, `environment ${environmentId} has no network on this runner`);
    const slot = slotInfo(claim + slotOffset);
    return new Promise<Duplex>((resolve, reject) => {
      // Forwarded traffic is interactive (an editor's language server, a dev server's reload socket): no Nagle delay.
      const socket = netConnect({ host: slot.environmentAddress, port, noDelay: true });
      socket.once('connect', () => {
        socket.off('error', fail);
        resolve(socket);
      });
      const fail = (error: NodeJS.ErrnoException) => {
        if (error.code === 'ECONNREFUSED') resolve(connectInNamespace(slot.netnsPath, port));
        else reject(error);
      };
      socket.once('error', fail);
    });
  };
}
