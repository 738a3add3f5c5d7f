// The runner's SSH gateway folder: the gateway (shell, exec, SFTP, port forwarding), its host key and the
// forwarder that reaches an environment's ports.
export { slotForwarder } from './forward.js';
export { startSshGateway } from './gateway.js';
export type { SshGateway, SshGatewayOptions } from './gateway.js';
export { generateEd25519KeyPair, hostKeyPath, loadOrCreateHostKey } from './host-key.js';
export type { HostKey } from './host-key.js';
