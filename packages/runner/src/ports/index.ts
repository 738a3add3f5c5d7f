// The runner's ports folder: listening-port detection (status.ports) and connections to ports bound only to an
// environment's loopback, for the port proxy and the SSH gateway.
export { listListeningPorts, listListeningSockets, loopbackOnly, parseProcNetTcp, reachableFromHost } from './listening.js';
export type { ListeningSocket } from './listening.js';
export { LoopbackConnectError, connectInNamespace } from './loopback.js';
export { PortsWatcher, wantedPorts } from './watcher.js';
export type { PortsWatcherOptions } from './watcher.js';
