// The runner's access folder: the access API (exec, logs, terminal) and its clients, and the verification of the
// server-signed tokens presented to the runner (access tokens, and the port proxy's port tokens).
export { ACCESS_TOKEN_ISSUER, AccessDeniedError, createAccessVerifier, createPortTokenVerifier } from './auth.js';
export type { AccessClaims, AccessVerifier, PortTokenClaims, PortTokenVerifier, TokenKeysOptions } from './auth.js';
export { execInEnvironment, fetchStats, followLogs } from './client.js';
export type { ExecInEnvironmentOptions, FetchStatsOptions, FollowLogsOptions } from './client.js';
export { errorFromBody } from './error-body.js';
export { metricsAllowed, startAccessServer } from './server.js';
export type { AccessMetricsOptions, AccessServer, AccessServerOptions } from './server.js';
export { LOGIN_SHELL_ARGV, ScrollbackBuffer, TerminalSessionNotFoundError, TerminalSessions } from './terminal.js';
export { openTerminal } from './terminal-client.js';
export type { OpenTerminalOptions, TerminalConnection, TerminalEnd } from './terminal-client.js';
