// The runner's port proxy folder: the proxy (server.ts and its parts) and its wiring into the runner (service.ts).
export { DEFAULT_PROXY_LISTEN, startPortService } from './service.js';
export type { PortService, PortServiceOptions } from './service.js';
export { TOKEN_PARAMETER, startPortProxy } from './server.js';
export type { PortProxy, PortProxyOptions } from './server.js';
