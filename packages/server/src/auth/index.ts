// The server's auth folder: who is calling (principals from bearer tokens), what they may do (policy), the
// tokens themselves, first-start bootstrap, and the one signer of access and port tokens.
export { ADMIN_USER_NAME, DEFAULT_CLASS_NAME, bootstrap, ensureRunnerToken, randomSuffix } from './bootstrap.js';
export type { BootstrapResult } from './bootstrap.js';
export { authorize, listScope } from './policy.js';
export type { ListScope, Verb } from './policy.js';
export { ForbiddenError, UnauthorizedError, authenticate } from './principal.js';
export type { AuthenticateOptions, Principal, RunnerPrincipal, UserPrincipal } from './principal.js';
export { ACCESS_TOKEN_ISSUER, jwks, loadSigningKeys, signAccessToken, signPortToken } from './signing.js';
export type { AccessTokenClaims, SigningKeys } from './signing.js';
export { PERSONAL_TOKEN_PREFIX, RUNNER_TOKEN_PREFIX, generateTokenSecret, hashTokenSecret, issueToken, redactToken } from './tokens.js';
export type { IssueTokenOptions, TokenType } from './tokens.js';
