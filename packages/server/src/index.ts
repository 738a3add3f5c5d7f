// @warren/server: the control plane (REST API + watch, auth, storage, controllers).
export { startServer } from './server.js';
export type { StartServerOptions, RunningServer } from './server.js';
export { buildApp } from './http/index.js';
export type { AppOptions, BuildAppOptions } from './http/index.js';
export { buildOpenApiDocument } from './http/index.js';
export { bootstrap, ensureRunnerToken, ADMIN_USER_NAME, DEFAULT_CLASS_NAME } from './auth/index.js';
export type { BootstrapResult } from './auth/index.js';
export { loadSigningKeys, signAccessToken, jwks, ACCESS_TOKEN_ISSUER } from './auth/index.js';
export type { SigningKeys, AccessTokenClaims } from './auth/index.js';
export { authenticate, UnauthorizedError, ForbiddenError } from './auth/index.js';
export type { Principal, UserPrincipal, RunnerPrincipal } from './auth/index.js';
export { issueToken, hashTokenSecret, generateTokenSecret, PERSONAL_TOKEN_PREFIX, RUNNER_TOKEN_PREFIX } from './auth/index.js';
export { openStore, GoneError } from './storage/index.js';
export type { ResourceStore, OpenStoreOptions } from './storage/index.js';
export { ControllerManager } from './controllers/index.js';
export type { ControllerManagerOptions } from './controllers/index.js';
