// Connections to ports that listen only on the environment's loopback (127.0.0.1, ::1): the host cannot reach
// them through the veth address, so a helper joins the environment's network namespace (nsenter(1), util-linux)
// and relays one TCP connection to 127.0.0.1:<port> over its stdio (socat(1)).
import { Duplex } from 'node:stream';
import { type Logger, silentLogger } from '@warren/base';
import { spawnLogged } from '../linux/exec.js';

/**
 * Opens a connection to `127.0.0.1:<port>` inside the network namespace at `namespacePath` (e.g.
 * `/proc/<pid>/ns/net` or `/run/netns/<name>`): one `nsenter --net=<path> -- socat STDIO TCP:127.0.0.1:<port>`
 * per connection. Needs CAP_SYS_ADMIN (the runner runs as root).
 * @returns a stream at once; when nothing listens, socat exits and the stream ends without data (callers see a
 *   closed connection, as with a refused one). Destroying the stream kills the helper.
 */
export function connectInNamespace(namespacePath: string, port: number, logger: Logger = silentLogger): Duplex {
  const child = spawnLogged(['nsenter', `--net=${namespacePath}`, '--', 'socat', 'STDIO', `TCP:127.0.0.1:${port}`], {
    stdio: ['pipe', 'pipe', 'ignore'],
    logger,
  });
  const stream = Duplex.from({ readable: child.stdout!, writable: child.stdin! });
  child.stdin!.on('error', () => {});
  child.on('error', (error) => stream.destroy(error));
  stream.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return stream;
}
