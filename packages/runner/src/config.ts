// Runner configuration: `<dataDir>/runner.json` merged with options given in code (CLI flags win).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvironmentClassIoSchema } from '@warren/api';
import { type ErrorCause, InvalidError } from '@warren/base';
import { z } from 'zod';

/** The image used for repositories without a devcontainer.json (the Dev Container project's base image). */
export const DEFAULT_IMAGE = 'mcr.microsoft.com/devcontainers/base:bookworm';

/** Basic credentials for one registry host. */
const CredentialSchema = z.strictObject({ username: z.string(), password: z.string() });

/**
 * Default overbooking ratios: CPU requests may add up to 4× the allocatable cores (development environments idle
 * most of the time, and cpu.shares / cpu.weight still divide a busy host by request); memory requests are not
 * overbooked, since a request is protected memory and a host cannot protect more than it has (raise it on hosts
 * with swap). docs/design/0010-requests-and-limits.md.
 */
export const DEFAULT_OVERBOOKING = { cpu: 4, memory: 1 } as const;
/** Default CPU and memory kept back for Warren itself (runner, server, database, image unpacking). */
export const DEFAULT_RESERVED = { cpuMillicores: 250, memoryBytes: 1024 ** 3 } as const;
/**
 * Default IO limits of Warren's own heavy IO (layer unpack, clone): enough for a pull to finish in reasonable time,
 * low enough that a typical SSD keeps most of its bandwidth for the environments. docs/design/0012-io-limits.md.
 */
export const DEFAULT_BACKGROUND_IO = { readBytesPerSecond: 200 * 1024 ** 2, writeBytesPerSecond: 100 * 1024 ** 2 } as const;

/** Schema of `<dataDir>/runner.json`; every field optional, defaults applied by {@link resolveRunnerConfig}. */
export const RunnerConfigSchema = z.strictObject({
  /** Image for repositories without devcontainer.json. */
  defaultImage: z.string().min(1).default(DEFAULT_IMAGE),
  /**
   * Registry mirrors per registry prefix, tried in order before the registry itself, e.g.
   * `{"mcr.microsoft.com": ["127.0.0.1:5000"]}` (air-gapped hosts). Keys are a registry host,
   * optionally followed by a repository path prefix (`mcr.microsoft.com/devcontainers`).
   */
  mirrors: z.record(z.string().min(1), z.array(z.string().min(1))).default({}),
  /** Basic credentials per registry host (`ghcr.io`), used for the registry's token or basic auth. */
  credentials: z.record(z.string().min(1), CredentialSchema).default({}),
  /** Registry hosts reached over plain HTTP even though not on loopback. */
  insecureRegistries: z.array(z.string().min(1)).default([]),
  /** Seconds between SIGTERM and SIGKILL when stopping an environment (Docker's `docker stop -t` is 10). */
  stopGraceSeconds: z.number().int().min(0).max(3600).default(10),
  /**
   * How many times its allocatable CPU and memory the requests of the environments placed on this runner may add
   * up to (reported as status.overbooking; the scheduler multiplies). 1 = no overbooking.
   */
  overbooking: z
    .strictObject({
      cpu: z.number().min(0.1).max(100).default(DEFAULT_OVERBOOKING.cpu),
      memory: z.number().min(0.1).max(100).default(DEFAULT_OVERBOOKING.memory),
    })
    .default({ ...DEFAULT_OVERBOOKING }),
  /**
   * CPU (millicores) and memory (bytes) kept back for Warren itself: status.allocatable = capacity - reserved
   * (never below 0).
   */
  reserved: z
    .strictObject({
      cpuMillicores: z.number().int().min(0).default(DEFAULT_RESERVED.cpuMillicores),
      memoryBytes: z.number().int().min(0).default(DEFAULT_RESERVED.memoryBytes),
    })
    .default({ ...DEFAULT_RESERVED }),
  /**
   * IO limits on the device that holds the data directory (docs/design/0012-io-limits.md), each field in bytes or
   * operations per second, absent or 0 = none: `environments` for environments whose class sets no `io`;
   * `background` for Warren's own heavy IO (image layer unpack, git clone) in its `background` cgroup.
   */
  io: z
    .strictObject({
      environments: EnvironmentClassIoSchema.optional(),
      background: EnvironmentClassIoSchema.default({ ...DEFAULT_BACKGROUND_IO }),
    })
    .default({ background: { ...DEFAULT_BACKGROUND_IO } }),
  /** Most environments this runner accepts (reported as capacity.environments). */
  maxEnvironments: z.number().int().min(1).max(16_383).default(50),
  /**
   * Added to every slot this runner allocates before kernel object names, uid ranges and subnets are
   * derived from it (slots.ts). Slot claims live in the data dir, but the objects are host-wide: two
   * runners (or test suites) on one host must use disjoint ranges `[slotOffset, slotOffset + maxEnvironments)`.
   */
  slotOffset: z.number().int().min(0).max(16_382).default(0),
  /** Environments reconciled in parallel. */
  concurrentReconciles: z.number().int().min(1).max(64).default(4),
  /** Seconds between full resyncs of every environment (level-triggered safety net). */
  resyncSeconds: z.number().int().min(1).max(86_400).default(60),
  /**
   * OCI runtime for new containers: `runc`, `crun` (faster per start and exec, ~10-20 ms per call on
   * environment containers, see bench/env-start; on hybrid cgroup hosts run through a private-mount-namespace
   * wrapper), or `auto` (crun when a one-time self-test at startup passes, else runc). Existing containers
   * keep the runtime they were created with.
   */
  runtime: z.enum(['auto', 'runc', 'crun']).default('auto'),
  /** Seconds between heartbeats (`PUT /runners/{id}/status`); the server marks a runner Inactive after 30 s. */
  heartbeatSeconds: z.number().int().min(1).max(300).default(10),
  /**
   * The CPU burst controller (docs/design/0015-cpu-burst-controller.md): every 500 ms it moves each environment's
   * CFS quota between its class's CPU request and limit, by the host's idle CPU and who is short of it. false: the
   * quota stays at the limit set at start (static limits, as before issue 9).
   */
  cpuController: z.boolean().default(true),
  /**
   * The Prometheus endpoint `GET /metrics` on the access API (docs/design/0014-telemetry.md). With `token`
   * (at least 16 characters), scrapers send `Authorization: Bearer <token>`; without, only clients connecting from
   * loopback may scrape, since the series name environments and classes.
   */
  metrics: z.strictObject({ token: z.string().min(16).optional() }).default({}),
});

/** The runner's effective configuration (defaults applied). */
export type RunnerConfig = z.infer<typeof RunnerConfigSchema>;
/** Configuration as written in runner.json or passed in code: every field optional. */
export type RunnerConfigInput = z.input<typeof RunnerConfigSchema>;

/**
 * Validates `input` and applies defaults.
 * @throws {InvalidError} reason `InvalidRunnerConfig`, one cause per bad field (dotted path).
 */
export function resolveRunnerConfig(input: RunnerConfigInput = {}, source = 'runner configuration'): RunnerConfig {
  const parsed = RunnerConfigSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const causes: ErrorCause[] = parsed.error.issues.map((issue) => ({
    field: issue.path.map(String).join('.'),
    message: issue.message,
  }));
  throw new InvalidError(
    `${source} is invalid: ${causes.map((cause) => `${cause.field || '(root)'}: ${cause.message}`).join('; ')}`,
    causes,
    'InvalidRunnerConfig',
  );
}

/**
 * Loads `<dataDir>/runner.json` (missing file = `{}`) and merges `overrides` over it, field by field
 * (objects such as `mirrors` are replaced, not deep-merged, so an override is exactly what it says).
 * @throws {InvalidError} reason `InvalidRunnerConfig` when the file is not JSON or a field is invalid.
 */
export async function loadRunnerConfig(dataDir: string, overrides: RunnerConfigInput = {}): Promise<RunnerConfig> {
  const file = join(dataDir, 'runner.json');
  let fromFile: unknown = {};
  try {
    fromFile = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      const message = `${file} cannot be read as JSON: ${(error as Error).message}`;
      throw Object.assign(new InvalidError(message, [{ field: '', message }], 'InvalidRunnerConfig'), { cause: error });
    }
  }
  if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) {
    throw new InvalidError(`${file} must hold a JSON object`, [{ field: '', message: 'expected an object' }], 'InvalidRunnerConfig');
  }
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, value]) => value !== undefined));
  return resolveRunnerConfig({ ...(fromFile as RunnerConfigInput), ...defined }, file);
}
