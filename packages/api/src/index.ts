// @warren/api: resource types and schemas (zod), the Status envelope, the typed HTTP + watch client, and the
// controller kit (work queue, informer) the server and the runner share.
// No node:* imports: it runs in the server, runner, CLI and web UI.
export {
  API_VERSION,
  NameSchema,
  LabelsSchema,
  TimeSchema,
  ObjectMetaSchema,
  CreateMetaSchema,
  PatchMetaSchema,
  ConditionSchema,
  ConditionStatusSchema,
  DesiredPhaseSchema,
  EnvironmentPhaseSchema,
  PortVisibilitySchema,
  GitSourceSchema,
  EnvironmentSpecSchema,
  EnvironmentPortSchema,
  ProgressSchema,
  EnvironmentStatusSchema,
  EnvironmentSchema,
  EnvironmentCreateSchema,
  EnvironmentPatchSchema,
  RunnerResourcesSchema,
  RunnerOverbookingSchema,
  RunnerSpecSchema,
  RunnerStatusSchema,
  RunnerSchema,
  RunnerCreateSchema,
  RunnerPatchSchema,
  EnvironmentClassSpecSchema,
  EnvironmentClassRequestsSchema,
  EnvironmentClassIoSchema,
  classRequests,
  EnvironmentClassSchema,
  EnvironmentClassCreateSchema,
  EnvironmentClassPatchSchema,
  UserSpecSchema,
  UserSchema,
  UserCreateSchema,
  UserPatchSchema,
  TokenSpecSchema,
  TokenStatusSchema,
  TokenSchema,
  TokenCreateSchema,
  statusUpdateSchema,
  KINDS,
} from './resources.js';
export type {
  ObjectMeta,
  Condition,
  DesiredPhase,
  EnvironmentPhase,
  EnvironmentSpec,
  EnvironmentSpecInput,
  EnvironmentStatus,
  Environment,
  EnvironmentCreate,
  EnvironmentPatch,
  Progress,
  RunnerResources,
  RunnerOverbooking,
  RunnerStatus,
  Runner,
  RunnerCreate,
  EnvironmentClassSpec,
  EnvironmentClassRequests,
  EnvironmentClassIo,
  EffectiveRequests,
  EnvironmentClass,
  EnvironmentClassCreate,
  User,
  UserCreate,
  Token,
  TokenCreate,
  Kind,
  ResourceByKind,
  Resource,
  ResourceList,
  WatchEvent,
} from './resources.js';
export { REASONS, StatusSchema, makeStatus, ApiError, formatStatus } from './status.js';
export type { Reason, Status } from './status.js';
export { setCondition, getCondition, isConditionTrue } from './conditions.js';
export { parseGitUrl, validateGitUrl, redactGitUrl, splitGitUrlRef, repositoryBasename, MAX_GIT_URL_LENGTH } from './git-url.js';
export type { GitUrlScheme, ParsedGitUrl } from './git-url.js';
export { AccessGrantSchema, ExecStartSchema, ExecChannel } from './access.js';
export type { AccessGrant, ExecStart, ExecControl } from './access.js';
export { TERMINAL_TAKEN_OVER_CLOSE_CODE } from './access.js';
export type { TerminalControl } from './access.js';
export { EnvironmentStatsSchema } from './stats.js';
export type { EnvironmentStats } from './stats.js';
export { WarrenClient } from './client.js';
export type { ClientOptions, ListOptions, WatchOptions } from './client.js';
export { SshKeySchema, SshKeyCreateSchema, SshAuthorizeRequestSchema, SshGrantSchema, SSH_HOST_KEY_INFO } from './ssh.js';
export type { SshKey, SshKeyCreate, SshAuthorizeRequest, SshGrant } from './ssh.js';
export { PORT_TOKEN_PARAMETER, PortOpenSchema, portUrl } from './ports.js';
export type { PortOpen } from './ports.js';
export {
  WorkQueue,
  Informer,
  ItemExponentialRateLimiter,
  BucketRateLimiter,
  MaxOfRateLimiter,
  defaultControllerRateLimiter,
  changedPredicate,
  generationChangedPredicate,
  realTimeSource,
  delay,
} from './controller/index.js';
export type {
  WorkQueueOptions,
  WorkQueueRunOptions,
  InformerObject,
  ListResult,
  ListerWatcher,
  InformerEvent,
  InformerEventHandler,
  EventPredicate,
  InformerOptions,
  RateLimiter,
  ItemExponentialRateLimiterOptions,
  BucketRateLimiterOptions,
  TimeSource,
  TimerHandle,
} from './controller/index.js';
