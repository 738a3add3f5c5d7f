// Resource types of the Warren API and their zod schemas. One schema drives validation, the
// TypeScript types and the OpenAPI document. Conventions follow Kubernetes API conventions:
// {kind, apiVersion, metadata, spec, status}; spec is intent, status is observation.
import { z } from 'zod';

/** The only API version so far. */
export const API_VERSION = 'v1' as const;

/**
 * A resource name: a DNS label (RFC 1123 §2.1 as Kubernetes uses it): 1-63 chars of `[a-z0-9-]`,
 * starting and ending with an alphanumeric. Names appear in URLs and hostnames (`<port>-<env>.<domain>`).
 */
export const NameSchema = z
  .string()
  .min(1)
  .max(63)
  .regex(
    /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/,
    'must be a DNS label: lowercase letters, digits and "-", starting and ending with a letter or digit',
  );

/** Label map: keys up to 63 chars of `[A-Za-z0-9._/-]`, values up to 255 chars. */
export const LabelsSchema = z.record(
  z
    .string()
    .min(1)
    .max(63)
    .regex(/^[A-Za-z0-9._/-]+$/, 'label keys use letters, digits, ".", "_", "/" and "-"'),
  z.string().max(255),
);

/** RFC 3339 timestamp string (UTC, `Date.prototype.toISOString()` form). */
export const TimeSchema = z.string().datetime({ offset: true });

/** Server-managed object metadata. `resourceVersion` is a decimal string of a global, increasing counter. */
export const ObjectMetaSchema = z.object({
  id: z.string(),
  name: z.string(),
  generation: z.number().int(),
  resourceVersion: z.string(),
  createdTime: TimeSchema,
  labels: LabelsSchema,
  ownerId: z.string(),
  deletionTime: TimeSchema.optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMetaSchema>;

/** Metadata a client may send on create: a name (generated when omitted) and labels. */
export const CreateMetaSchema = z.strictObject({
  name: NameSchema.optional(),
  labels: LabelsSchema.optional(),
});

/** Metadata a client may send on patch: labels, and `resourceVersion` for optimistic concurrency (409 on mismatch). */
export const PatchMetaSchema = z.strictObject({
  labels: LabelsSchema.optional(),
  resourceVersion: z.string().regex(/^\d+$/, 'must be a decimal resourceVersion').optional(),
});

/** Condition status per Kubernetes conventions. */
export const ConditionStatusSchema = z.enum(['True', 'False', 'Unknown']);

/** One observed condition: `type` is an adjective or past tense (`Scheduled`), `reason` CamelCase. */
export const ConditionSchema = z.object({
  type: z.string(),
  status: ConditionStatusSchema,
  reason: z.string(),
  message: z.string(),
  lastTransitionTime: TimeSchema,
});
export type Condition = z.infer<typeof ConditionSchema>;

// ---------------------------------------------------------------- Environment

/** What the user wants an environment to be. `Deleted` is set by DELETE; the runner then removes every trace. */
export const DesiredPhaseSchema = z.enum(['Running', 'Stopped', 'Deleted']);
export type DesiredPhase = z.infer<typeof DesiredPhaseSchema>;

/** Observed phase summary, for humans. Conditions hold the detail. */
export const EnvironmentPhaseSchema = z.enum([
  'Pending',
  'Creating',
  'Starting',
  'Running',
  'Stopping',
  'Stopped',
  'Deleting',
  'Deleted',
  'Failed',
]);
export type EnvironmentPhase = z.infer<typeof EnvironmentPhaseSchema>;

/** Port visibility: `Owner` needs the owner's auth; `Public` needs nothing. */
export const PortVisibilitySchema = z.enum(['Owner', 'Public']);

/** Git source. `url` is validated by `validateGitUrl`; `ref` is a branch, tag or commit (default: the remote HEAD). */
export const GitSourceSchema = z.strictObject({
  url: z.string().min(1).max(2048),
  ref: z.string().min(1).max(255).optional(),
});

/** Environment spec as stored (defaults applied). */
export const EnvironmentSpecSchema = z.strictObject({
  desiredPhase: DesiredPhaseSchema.default('Running'),
  source: z.strictObject({ git: GitSourceSchema }),
  devcontainer: z
    .strictObject({
      /** Path of devcontainer.json inside the repository, overriding discovery. */
      path: z.string().min(1).max(1024).optional(),
      /** Bump to request a rebuild (an imperative request inside a declarative spec). */
      session: z.string().max(128).optional(),
    })
    .default({}),
  className: NameSchema.default('default'),
  ports: z
    .array(z.strictObject({ port: z.number().int().min(1).max(65535), visibility: PortVisibilitySchema.default('Owner') }))
    .max(100)
    .default([]),
  timeouts: z
    .strictObject({
      /** Stop the environment after this many seconds without activity; 0 disables. */
      inactivitySeconds: z
        .number()
        .int()
        .min(0)
        .max(30 * 24 * 3600)
        .default(3600),
    })
    .default({ inactivitySeconds: 3600 }),
});
export type EnvironmentSpec = z.infer<typeof EnvironmentSpecSchema>;
/** Environment spec as a client sends it (defaults not yet applied). */
export type EnvironmentSpecInput = z.input<typeof EnvironmentSpecSchema>;

/** A port of an environment as observed: from `forwardPorts`, the spec, or detected listening. */
export const EnvironmentPortSchema = z.object({
  port: z.number().int(),
  visibility: PortVisibilitySchema,
  url: z.string().optional(),
  label: z.string().optional(),
  source: z.enum(['Devcontainer', 'Spec', 'Detected']),
});

/** Progress of a slow step (clone, pull, build, lifecycle command) for live display. */
export const ProgressSchema = z.object({
  step: z.string(),
  message: z.string().optional(),
  bytesDone: z.number().optional(),
  bytesTotal: z.number().optional(),
});
export type Progress = z.infer<typeof ProgressSchema>;

/**
 * Environment status. One owner per field (docs/design/0009-controller-kit.md, "One owner per status field");
 * the runner writes the whole status with `PUT .../status` and carries the fields of others over:
 * - `phase` (the server sets `Pending` at create), `observedGeneration`, `progress`, `commit`, `devcontainer`,
 *   `startedTime`, and the conditions `ContentReady`, `ImageReady`, `Running`, `LifecycleCommandsSucceeded`,
 *   `DevcontainerSupported`: the runner's EnvironmentReconciler.
 * - `ports`: the runner (the reconciler's `Devcontainer` entries, its ports watcher's `Spec` and `Detected` ones).
 * - `runnerId` and the condition `Scheduled`: the server's scheduler (a runner may not change `runnerId`).
 * - `lastActivityTime`: the server's keepalive (`POST .../keepalive`, sent by the runner's activity reporter);
 *   the reconciler also sets it when it starts a container, and the server never lets it go back.
 * - `message`: the reconciler (retry and failure messages), except that the inactivity controller writes its
 *   reason together with `spec.desiredPhase: Stopped` and the condition `StoppedForInactivity`.
 * - `disk`: the runner's EnvironmentReconciler, when it reconciles (docs/design/0011-disk-quota.md).
 * - the condition `OOMKilled`: the runner's EnvironmentReconciler, from the OOM kills it observes in the running
 *   container (docs/design/0010-requests-and-limits.md "Memory and OOM").
 */
export const EnvironmentStatusSchema = z.object({
  phase: EnvironmentPhaseSchema,
  observedGeneration: z.number().int().default(0),
  runnerId: z.string().optional(),
  message: z.string().optional(),
  conditions: z.array(ConditionSchema).default([]),
  progress: ProgressSchema.optional(),
  commit: z.string().optional(),
  devcontainer: z
    .object({
      configPath: z.string().optional(),
      image: z.string().optional(),
      imageDigest: z.string().optional(),
      remoteUser: z.string().optional(),
      workspaceFolder: z.string().optional(),
    })
    .optional(),
  ports: z.array(EnvironmentPortSchema).default([]),
  lastActivityTime: TimeSchema.optional(),
  startedTime: TimeSchema.optional(),
  /**
   * The environment's disk, when its class has a quota (`diskBytes`): bytes in use and bytes it can fill in all
   * (the quota less filesystem metadata). Measured when the runner reconciles (at least every resync), so it lags.
   */
  disk: z.object({ usedBytes: z.number().int().nonnegative(), limitBytes: z.number().int().nonnegative() }).optional(),
});
export type EnvironmentStatus = z.infer<typeof EnvironmentStatusSchema>;

/** An Environment resource. */
export const EnvironmentSchema = z.object({
  kind: z.literal('Environment'),
  apiVersion: z.literal(API_VERSION),
  metadata: ObjectMetaSchema,
  spec: EnvironmentSpecSchema,
  status: EnvironmentStatusSchema,
});
export type Environment = z.infer<typeof EnvironmentSchema>;

/** Body of `POST /api/v1/environments`. */
export const EnvironmentCreateSchema = z.strictObject({
  kind: z.literal('Environment').optional(),
  apiVersion: z.literal(API_VERSION).optional(),
  metadata: CreateMetaSchema.default({}),
  spec: EnvironmentSpecSchema,
});
export type EnvironmentCreate = z.input<typeof EnvironmentCreateSchema>;

/** Body of `PATCH /api/v1/environments/{id}` (JSON merge patch, RFC 7396, of metadata.labels and spec). */
export const EnvironmentPatchSchema = z.strictObject({
  metadata: PatchMetaSchema.optional(),
  spec: EnvironmentSpecSchema.partial().optional(),
});
export type EnvironmentPatch = z.input<typeof EnvironmentPatchSchema>;

// ---------------------------------------------------------------- Runner

/** Resource amounts of a runner. */
export const RunnerResourcesSchema = z.object({
  cpuMillicores: z.number().int().min(0),
  memoryBytes: z.number().int().min(0),
  environments: z.number().int().min(0),
});
export type RunnerResources = z.infer<typeof RunnerResourcesSchema>;

/**
 * A runner's overbooking policy (from its runner.json): the requests of the environments placed on it may add
 * up to `allocatable × ratio` per dimension. 1 = no overbooking. Absent (older runners) = 1.
 */
export const RunnerOverbookingSchema = z.object({
  /** Ratio for CPU requests (millicores). */
  cpu: z.number().min(0.1).max(100),
  /** Ratio for memory requests (bytes). */
  memory: z.number().min(0.1).max(100),
});
export type RunnerOverbooking = z.infer<typeof RunnerOverbookingSchema>;

/** Runner spec: admins may cordon a runner. */
export const RunnerSpecSchema = z.strictObject({
  unschedulable: z.boolean().default(false),
});

/**
 * Runner status. Owners (docs/design/0009-controller-kit.md): the runner's heartbeat writes every field, with
 * `phase: Active` and no conditions; the server's runner-liveness controller writes `phase: Inactive` and the
 * condition `Ready=False` when heartbeats stop (the next heartbeat sets them back).
 */
export const RunnerStatusSchema = z.object({
  phase: z.enum(['Active', 'Inactive']),
  lastHeartbeatTime: TimeSchema.optional(),
  /** The host: its cores × 1000, its memory, and `maxEnvironments`. */
  capacity: RunnerResourcesSchema.optional(),
  /** What environments may be guaranteed: capacity minus what the runner reserves for Warren itself. */
  allocatable: RunnerResourcesSchema.optional(),
  /** The ratios the scheduler multiplies `allocatable` by (docs/design/0010-requests-and-limits.md). */
  overbooking: RunnerOverbookingSchema.optional(),
  version: z.string().optional(),
  endpoints: z
    .object({
      /** Base URL of the runner's access API (exec, logs, terminal). */
      access: z.string().optional(),
      ssh: z.string().optional(),
      proxy: z.string().optional(),
    })
    .default({}),
  conditions: z.array(ConditionSchema).default([]),
  info: z.record(z.string(), z.string()).optional(),
});
export type RunnerStatus = z.infer<typeof RunnerStatusSchema>;

/** A Runner resource: one per host. */
export const RunnerSchema = z.object({
  kind: z.literal('Runner'),
  apiVersion: z.literal(API_VERSION),
  metadata: ObjectMetaSchema,
  spec: RunnerSpecSchema,
  status: RunnerStatusSchema,
});
export type Runner = z.infer<typeof RunnerSchema>;

/** Body of `POST /api/v1/runners` (a runner registering, or an admin pre-creating one). */
export const RunnerCreateSchema = z.strictObject({
  kind: z.literal('Runner').optional(),
  apiVersion: z.literal(API_VERSION).optional(),
  metadata: z.strictObject({ name: NameSchema, labels: LabelsSchema.optional() }),
  spec: RunnerSpecSchema.default({ unschedulable: false }),
});
export type RunnerCreate = z.input<typeof RunnerCreateSchema>;

/** Body of `PATCH /api/v1/runners/{id}`. */
export const RunnerPatchSchema = z.strictObject({
  metadata: PatchMetaSchema.optional(),
  spec: RunnerSpecSchema.partial().optional(),
});

// ---------------------------------------------------------------- EnvironmentClass

/**
 * What an environment is guaranteed (its requests). Each field defaults to the matching limit of the class, so a
 * class without `requests` reserves its limits (what Warren did before requests existed). The scheduler places
 * environments by requests, never by limits (docs/design/0010-requests-and-limits.md).
 */
export const EnvironmentClassRequestsSchema = z.strictObject({
  /** Guaranteed CPU in millicores (1000 = one core); at most `cpuMillicores`. 0 = no guarantee (lowest weight). */
  cpuMillicores: z.number().int().min(0).max(1_000_000).optional(),
  /** Guaranteed (protected) memory in bytes; at most `memoryBytes`. 0 = no protection. */
  memoryBytes: z.number().int().min(0).optional(),
});
export type EnvironmentClassRequests = z.infer<typeof EnvironmentClassRequestsSchema>;

/**
 * IO limits of an environment on the device that holds the runner's data directory. Every field is optional;
 * absent or 0 means no limit (as cgroup v1 `blkio.throttle.*` reads 0).
 */
export const EnvironmentClassIoSchema = z.strictObject({
  /** Read bandwidth limit in bytes per second. */
  readBytesPerSecond: z.number().int().min(0).optional(),
  /** Write bandwidth limit in bytes per second. */
  writeBytesPerSecond: z.number().int().min(0).optional(),
  /** Read operations per second. */
  readIops: z.number().int().min(0).optional(),
  /** Write operations per second. */
  writeIops: z.number().int().min(0).optional(),
});
export type EnvironmentClassIo = z.infer<typeof EnvironmentClassIoSchema>;

/** The fields of an EnvironmentClass spec, without the cross-field checks (merge patches use its `.partial()`). */
const EnvironmentClassSpecFieldsSchema = z.strictObject({
  displayName: z.string().max(128).optional(),
  /** CPU limit (the burst ceiling) in millicores (1000 = one core). */
  cpuMillicores: z.number().int().min(10).max(1_000_000),
  /** Memory limit in bytes (hard: past it the environment's own processes are reclaimed, then OOM-killed). */
  memoryBytes: z
    .number()
    .int()
    .min(16 * 1024 * 1024),
  /** Guarantees; each defaults to its limit. */
  requests: EnvironmentClassRequestsSchema.optional(),
  /** Swap on top of memory in bytes; 0 = no swap. */
  swapBytes: z.number().int().min(0).default(0),
  /** Limit on the environment's writable state (upper dir + workspace) in bytes; absent = no quota. */
  diskBytes: z.number().int().min(0).optional(),
  /** Maximum number of processes (cgroup `pids.max`). */
  pids: z.number().int().min(16).max(4_194_304).default(4096),
  /** IO limits; absent = none. */
  io: EnvironmentClassIoSchema.optional(),
});

/**
 * A named size for environments. cgroup limits are derived from it on the runner. Each request must be at most
 * its limit (a field error on `requests.cpuMillicores` / `requests.memoryBytes` otherwise).
 */
export const EnvironmentClassSpecSchema = EnvironmentClassSpecFieldsSchema.superRefine((spec, ctx) => {
  const requests = spec.requests;
  if (requests?.cpuMillicores !== undefined && requests.cpuMillicores > spec.cpuMillicores) {
    ctx.addIssue({
      code: 'custom',
      path: ['requests', 'cpuMillicores'],
      message: `the CPU request (${requests.cpuMillicores}m) must be at most the CPU limit cpuMillicores (${spec.cpuMillicores}m)`,
    });
  }
  if (requests?.memoryBytes !== undefined && requests.memoryBytes > spec.memoryBytes) {
    ctx.addIssue({
      code: 'custom',
      path: ['requests', 'memoryBytes'],
      message: `the memory request (${requests.memoryBytes} bytes) must be at most the memory limit memoryBytes (${spec.memoryBytes} bytes)`,
    });
  }
});
export type EnvironmentClassSpec = z.infer<typeof EnvironmentClassSpecSchema>;

/** Effective requests of a class: what the scheduler reserves and the runner protects. */
export interface EffectiveRequests {
  /** Guaranteed CPU in millicores. */
  cpuMillicores: number;
  /** Guaranteed memory in bytes. */
  memoryBytes: number;
}

/**
 * The effective requests of a class spec: each request, or its limit when the request is absent.
 * @returns millicores and bytes, each at most the matching limit for a validated spec.
 */
export function classRequests(spec: Pick<EnvironmentClassSpec, 'cpuMillicores' | 'memoryBytes' | 'requests'>): EffectiveRequests {
  return {
    cpuMillicores: spec.requests?.cpuMillicores ?? spec.cpuMillicores,
    memoryBytes: spec.requests?.memoryBytes ?? spec.memoryBytes,
  };
}

/** An EnvironmentClass resource. */
export const EnvironmentClassSchema = z.object({
  kind: z.literal('EnvironmentClass'),
  apiVersion: z.literal(API_VERSION),
  metadata: ObjectMetaSchema,
  spec: EnvironmentClassSpecSchema,
  status: z.object({}).default({}),
});
export type EnvironmentClass = z.infer<typeof EnvironmentClassSchema>;

/** Body of `POST /api/v1/environmentclasses`. */
export const EnvironmentClassCreateSchema = z.strictObject({
  kind: z.literal('EnvironmentClass').optional(),
  apiVersion: z.literal(API_VERSION).optional(),
  metadata: z.strictObject({ name: NameSchema, labels: LabelsSchema.optional() }),
  spec: EnvironmentClassSpecSchema,
});
export type EnvironmentClassCreate = z.input<typeof EnvironmentClassCreateSchema>;

/** Body of `PATCH /api/v1/environmentclasses/{id}`. */
export const EnvironmentClassPatchSchema = z.strictObject({
  metadata: PatchMetaSchema.optional(),
  spec: EnvironmentClassSpecFieldsSchema.partial().optional(),
});

// ---------------------------------------------------------------- User

/** User spec. `admin` users see and manage everything. */
export const UserSpecSchema = z.strictObject({
  displayName: z.string().max(128).optional(),
  admin: z.boolean().default(false),
});

/** A User resource. */
export const UserSchema = z.object({
  kind: z.literal('User'),
  apiVersion: z.literal(API_VERSION),
  metadata: ObjectMetaSchema,
  spec: UserSpecSchema,
  status: z.object({}).default({}),
});
export type User = z.infer<typeof UserSchema>;

/** Body of `POST /api/v1/users` (admins only). */
export const UserCreateSchema = z.strictObject({
  kind: z.literal('User').optional(),
  apiVersion: z.literal(API_VERSION).optional(),
  metadata: z.strictObject({ name: NameSchema, labels: LabelsSchema.optional() }),
  spec: UserSpecSchema.default({ admin: false }),
});
export type UserCreate = z.input<typeof UserCreateSchema>;

/** Body of `PATCH /api/v1/users/{id}`. */
export const UserPatchSchema = z.strictObject({
  metadata: PatchMetaSchema.optional(),
  spec: UserSpecSchema.partial().optional(),
});

// ---------------------------------------------------------------- Token

/**
 * Token spec. `Personal` tokens act as their owner (metadata.ownerId). `Runner` tokens can only read and
 * update the runner named `runnerName` and the environments scheduled to it.
 */
export const TokenSpecSchema = z.strictObject({
  type: z.enum(['Personal', 'Runner']).default('Personal'),
  runnerName: NameSchema.optional(),
  expiresTime: TimeSchema.optional(),
  description: z.string().max(256).optional(),
});

/** Token status. `secret` (the bearer token itself) is present only in the response that created it. */
export const TokenStatusSchema = z.object({
  lastUsedTime: TimeSchema.optional(),
  secret: z.string().optional(),
});

/** A Token resource. The secret is stored hashed (SHA-256) and shown once. */
export const TokenSchema = z.object({
  kind: z.literal('Token'),
  apiVersion: z.literal(API_VERSION),
  metadata: ObjectMetaSchema,
  spec: TokenSpecSchema,
  status: TokenStatusSchema,
});
export type Token = z.infer<typeof TokenSchema>;

/** Body of `POST /api/v1/tokens`. Users create Personal tokens for themselves; admins also Runner tokens. */
export const TokenCreateSchema = z.strictObject({
  kind: z.literal('Token').optional(),
  apiVersion: z.literal(API_VERSION).optional(),
  metadata: CreateMetaSchema.default({}),
  spec: TokenSpecSchema.default({ type: 'Personal' }),
});
export type TokenCreate = z.input<typeof TokenCreateSchema>;

// ---------------------------------------------------------------- shared shapes

/** Body of `PUT /api/v1/<kind>/{id}/status`: the whole status, optionally guarded by resourceVersion. */
export function statusUpdateSchema<T extends z.ZodType>(status: T) {
  return z.strictObject({
    metadata: z.strictObject({ resourceVersion: z.string().regex(/^\d+$/).optional() }).optional(),
    status,
  });
}

/** The kinds served by the API, with their URL plural. */
export const KINDS = {
  Environment: 'environments',
  Runner: 'runners',
  EnvironmentClass: 'environmentclasses',
  User: 'users',
  Token: 'tokens',
} as const;
export type Kind = keyof typeof KINDS;

/** Maps each kind to its resource type. */
export interface ResourceByKind {
  Environment: Environment;
  Runner: Runner;
  EnvironmentClass: EnvironmentClass;
  User: User;
  Token: Token;
}

/** Any resource. */
export type Resource = ResourceByKind[Kind];

/** `GET /api/v1/<plural>` response. `metadata.resourceVersion` is where a watch should start. */
export interface ResourceList<T> {
  kind: string;
  apiVersion: typeof API_VERSION;
  metadata: { resourceVersion: string };
  items: T[];
}

/** One line of a watch stream (NDJSON). `BOOKMARK` carries only a fresh resourceVersion in `object.metadata`. */
export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';
  object: T;
}
