// The builder backend: builds devcontainer.json configs with `build` (Dockerfile) or `features` through the
// reference `devcontainer build` on the runner's own Docker engine, saves the image as a `docker save` archive
// for ImageStore.importDockerArchive, and caches archives by a hash of the build's inputs.
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { type Logger, SingleFlight, errorMessage, silentLogger } from '@warren/base';
import { RegistryClient, formatReference, parseReference } from '../image/index.js';
import { ExecError, spawnLogged } from '../linux/index.js';
import { type BuildPlan, computeCacheKey, dockerfileBaseImages, readBuildPlan } from './build-inputs.js';
import type { DockerEngine } from './docker-engine.js';
import { BaseImageNotFoundError, DevcontainerBuildError } from './errors.js';

/** One build request; see {@link DevcontainerBuilder.build}. */
export interface BuildRequest {
  /** The workspace folder on the host (the cloned repository). */
  workspaceDir: string;
  /** The devcontainer.json, absolute or relative to `workspaceDir`. */
  configPath: string;
  /** The reference the caller will import the archive under; only logged (the archive's tag is `warren-build/<key>:latest`). */
  imageName?: string;
  /**
   * Registry mirrors per reference prefix, as in the runner config (`{"mcr.microsoft.com": ["127.0.0.1:5000"]}`,
   * registries.conf prefix semantics, longest prefix wins). Base images under a mirrored prefix are pulled from
   * the mirrors (then the registry itself) and tagged with their original name before the build.
   */
  registryMirrors?: Record<string, string[]>;
  /** Receives the build output line by line (devcontainer CLI and docker output, no trailing newline). */
  onLog?: (line: string) => void;
  /** Aborting kills the build; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Outcome of {@link DevcontainerBuilder.build}. */
export interface BuildResult {
  /** `<dataDir>/builder/archives/<cacheKey>.tar`, a `docker save` archive holding one image. */
  dockerArchivePath: string;
  /** sha256 hex of the build's inputs (see computeCacheKey in build-inputs.ts). */
  cacheKey: string;
  /** The tag of the image inside the archive: `warren-build/<cacheKey>:latest`. */
  imageName: string;
  /** True when the archive was reused from an earlier build with the same inputs. */
  cached: boolean;
}

/** Options of {@link DevcontainerBuilder}. */
export interface DevcontainerBuilderOptions {
  engine: DockerEngine;
  logger?: Logger;
  /** The reference CLI's entry script (default: `devcontainer.js` of the installed `@devcontainers/cli`). */
  devcontainerCliPath?: string;
}

/** Number of build output lines kept for error messages. */
const LOG_TAIL_LINES = 40;

/** Docker and registry messages meaning "this base image does not exist or cannot be fetched". */
const MISSING_IMAGE_PATTERNS = [
  /manifest unknown/i,
  /manifest for \S+ not found/i,
  /pull access denied/i,
  /repository does not exist/i,
  /no such host/i,
  /not found: manifest/i,
  /No such image/i,
  /connection refused/i,
  /i\/o timeout/i,
];

/**
 * Builds devcontainer images with the reference CLI on a {@link DockerEngine} and caches the results as
 * `docker save` archives under `<dataDir>/builder/archives/`. Two builds with the same cache key at the same
 * time share one run. The caller imports the archive with `ImageStore.importDockerArchive(path, ref)`.
 */
export class DevcontainerBuilder {
  /** `<dataDir>/builder/archives`. */
  readonly archivesDir: string;
  private readonly engine: DockerEngine;
  private readonly logger: Logger;
  private readonly cliPath: string;
  private readonly flights = new SingleFlight<BuildResult>();
  private cliVersion: string | undefined;

  constructor(options: DevcontainerBuilderOptions) {
    this.engine = options.engine;
    this.logger = (options.logger ?? silentLogger).child({ component: 'devcontainer-builder' });
    this.cliPath = options.devcontainerCliPath ?? referenceCliPath();
    this.archivesDir = join(options.engine.root, 'archives');
  }

  /** The archive path for a cache key: `<archivesDir>/<key>.tar`. */
  archivePath(cacheKey: string): string {
    return join(this.archivesDir, `${cacheKey}.tar`);
  }

  /**
   * Builds the image of a devcontainer.json with `build` or `features`, or reuses the archive of an earlier
   * build with the same inputs.
   * Steps on a miss: start the engine (idempotent), pre-pull mirrored base images and tag them with their
   * original names (Docker's own `registry-mirrors` only apply to Docker Hub), run
   * `devcontainer build --image-name warren-build/<key>:latest --no-lockfile` with output to `onLog`, then
   * `docker save` to a temp file renamed to `<key>.tar` (so a crash never leaves a half archive).
   * @throws {InvalidError} (reason `InvalidDevcontainerConfig`) for a config that does not parse or has nothing to build.
   * @throws {BaseImageNotFoundError} when a base image is at neither its mirrors nor its registry.
   * @throws {DevcontainerBuildError} when the build fails (Dockerfile syntax, failing RUN, feature install);
   *   its message ends with the build log tail.
   * @throws {DockerNotInstalledError}, {DockerEngineError} from the engine.
   */
  async build(request: BuildRequest): Promise<BuildResult> {
    const configPath = resolve(request.workspaceDir, request.configPath);
    const plan = await readBuildPlan(configPath);
    const cacheKey = await computeCacheKey(plan, `@devcontainers/cli@${await this.referenceCliVersion()}`);
    const log = this.logger.child({ cacheKey, imageName: request.imageName });
    const cachedResult = await this.cachedResult(cacheKey);
    if (cachedResult) {
      log.info({ archive: cachedResult.dockerArchivePath }, 'devcontainer build cache hit');
      request.onLog?.(`[warren] build cache hit: ${cacheKey}`);
      return cachedResult;
    }
    return this.flights.do(cacheKey, async () => {
      const again = await this.cachedResult(cacheKey);
      if (again) return again;
      const started = performance.now();
      const result = await this.runBuild(plan, cacheKey, request, log);
      log.info({ durationMs: Math.round(performance.now() - started) }, 'devcontainer build finished');
      return result;
    });
  }

  private async cachedResult(cacheKey: string): Promise<BuildResult | undefined> {
    const path = this.archivePath(cacheKey);
    const info = await stat(path).catch(() => undefined);
    return info?.isFile() ? { dockerArchivePath: path, cacheKey, imageName: buildTag(cacheKey), cached: true } : undefined;
  }

  private async runBuild(plan: BuildPlan, cacheKey: string, request: BuildRequest, log: Logger): Promise<BuildResult> {
    const { signal } = request;
    const onLog = request.onLog ?? (() => {});
    await this.engine.ensureRunning(signal);
    const baseImages = plan.dockerfilePath
      ? dockerfileBaseImages(await readFile(plan.dockerfilePath, 'utf8'), plan.buildArgs)
      : plan.image !== undefined
        ? [plan.image]
        : [];
    for (const image of baseImages) await this.pullFromMirrors(image, request.registryMirrors ?? {}, onLog, signal);

    const tag = buildTag(cacheKey);
    const temporaryDir = join(this.engine.root, 'tmp');
    await mkdir(temporaryDir, { recursive: true });
    const argv = [
      process.execPath,
      this.cliPath,
      'build',
      '--workspace-folder',
      resolve(request.workspaceDir),
      '--config',
      plan.configPath,
      '--image-name',
      tag,
      '--docker-path',
      this.engine.dockerCliPath,
      '--user-data-folder',
      join(this.engine.root, 'cli-data'),
      '--log-format',
      'text',
      // The CLI would otherwise write .devcontainer/devcontainer-lock.json into the user's workspace.
      '--no-lockfile',
    ];
    const tail: string[] = [];
    const outcome = await runStreaming(argv, {
      env: { ...this.engine.environment(), TMPDIR: temporaryDir },
      logger: log,
      signal,
      onLine: (line) => {
        tail.push(line);
        if (tail.length > LOG_TAIL_LINES) tail.shift();
        onLog(line);
      },
    });
    const logTail = tail.join('\n');
    const result = parseCliResult(outcome.stdout);
    if (outcome.code !== 0 || result?.outcome !== 'success') {
      const message = result?.message ?? `devcontainer build exited with code ${outcome.code ?? outcome.signal ?? '?'}`;
      const missing = missingBaseImage(`${logTail}\n${result?.description ?? ''}\n${message}`, baseImages);
      if (missing !== undefined) throw new BaseImageNotFoundError(missing, [`${missing}: ${lastMatchingLine(logTail) ?? message}`]);
      throw new DevcontainerBuildError(`devcontainer build of ${plan.configPath} failed: ${message}`, logTail);
    }

    await mkdir(this.archivesDir, { recursive: true });
    const archive = this.archivePath(cacheKey);
    const partial = `${archive}.${process.pid}.${Date.now()}.partial`;
    try {
      await this.engine.docker(['save', '--output', partial, tag], { signal });
      await rename(partial, archive);
    } finally {
      await rm(partial, { force: true });
    }
    onLog(`[warren] saved ${tag} to ${archive}`);
    return { dockerArchivePath: archive, cacheKey, imageName: tag, cached: false };
  }

  /**
   * Makes a mirrored base image available under its original name: `docker pull` from each mirror in order,
   * then from the registry itself, and `docker tag` the first success with the name the Dockerfile uses.
   * Images without a configured mirror are left to the build, which pulls them itself.
   */
  private async pullFromMirrors(
    image: string,
    mirrors: Record<string, string[]>,
    onLog: (line: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    if (Object.keys(mirrors).length === 0) return;
    let reference;
    try {
      reference = parseReference(image);
    } catch {
      return; // not a plain reference (e.g. unexpanded variables); the build reports it
    }
    const endpoints = new RegistryClient({ mirrors }, this.logger).endpoints(reference).filter((endpoint) => endpoint.mirror);
    if (endpoints.length === 0) return;
    const suffix = `${reference.tag !== undefined ? `:${reference.tag}` : ''}${reference.digest !== undefined ? `@${reference.digest}` : ''}`;
    const candidates = [...endpoints.map((endpoint) => `${endpoint.host}/${endpoint.repository}${suffix}`), formatReference(reference)];
    const attempts: string[] = [];
    for (const candidate of candidates) {
      try {
        onLog(`[warren] pulling base image ${image} from ${candidate}`);
        await this.engine.docker(['pull', '--quiet', candidate], { signal });
        if (reference.tag !== undefined && candidate !== formatReference(reference)) {
          // `docker tag` cannot create a digest reference; a FROM pinned by digest alone is pulled by the build.
          await this.engine.docker(['tag', candidate, image], { signal });
        }
        return;
      } catch (error) {
        if (signal?.aborted) throw error;
        const detail = error instanceof ExecError ? (error.stderrTail.trim().split('\n').at(-1) ?? '') : errorMessage(error);
        attempts.push(`${candidate}: ${detail}`);
        onLog(`[warren] could not pull ${candidate}: ${detail}`);
      }
    }
    throw new BaseImageNotFoundError(image, attempts);
  }

  private async referenceCliVersion(): Promise<string> {
    if (this.cliVersion === undefined) {
      const packageJson = join(dirname(this.cliPath), 'package.json');
      const text = await readFile(packageJson, 'utf8').catch(() => '{}');
      this.cliVersion = (JSON.parse(text) as { version?: string }).version ?? 'unknown';
    }
    return this.cliVersion;
  }
}

/** The tag a build gets inside the managed engine and the archive: `warren-build/<cacheKey>:latest`. */
export function buildTag(cacheKey: string): string {
  return `warren-build/${cacheKey}:latest`;
}

/**
 * Path of the installed reference CLI's entry script (`@devcontainers/cli/devcontainer.js`, a dependency of
 * the runner, so `npm ci` brings it).
 */
export function referenceCliPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@devcontainers/cli/package.json')), 'devcontainer.js');
}

/** The JSON document the devcontainer CLI prints last on stdout (`{"outcome": "success" | "error", ...}`). */
export interface ReferenceCliResult {
  outcome?: string;
  message?: string;
  description?: string;
  containerId?: string;
  imageName?: string[];
  [key: string]: unknown;
}

/** Parses the last JSON object line of the CLI's stdout; undefined when there is none. */
export function parseCliResult(stdout: string): ReferenceCliResult | undefined {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    if (!line.trim().startsWith('{')) continue;
    try {
      return JSON.parse(line) as ReferenceCliResult;
    } catch {
      // not the result line
    }
  }
  return undefined;
}

/**
 * Which of `baseImages` a failed build's log says is missing or unreachable, if any: a line must both match a
 * missing-image message and name the image (or its repository or registry host), so a failing `RUN curl` is not
 * mistaken for a missing base image just because the log's `FROM` step names one.
 */
function missingBaseImage(text: string, baseImages: readonly string[]): string | undefined {
  const lines = text.split('\n').filter((line) => MISSING_IMAGE_PATTERNS.some((pattern) => pattern.test(line)));
  for (const image of baseImages) {
    const names = [image];
    try {
      const reference = parseReference(image);
      names.push(`${reference.registry}/${reference.repository}`, reference.repository.replace(/^library\//, ''));
      if (reference.registry !== 'docker.io') names.push(reference.registry);
    } catch {
      // not a plain reference; match the text as written
    }
    if (lines.some((line) => names.some((name) => line.includes(name)))) return image;
  }
  return undefined;
}

function lastMatchingLine(text: string): string | undefined {
  return text
    .split('\n')
    .reverse()
    .find((line) => MISSING_IMAGE_PATTERNS.some((pattern) => pattern.test(line)))
    ?.trim();
}

/** Outcome of {@link runStreaming}. */
export interface StreamingOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
}

/**
 * Runs a child through the exec seam's {@link spawnLogged}, hands each stderr line (and each stdout line that
 * is not the final JSON result) to `onLine`, and collects stdout. The child gets its own process group, which
 * an abort kills as a whole (the CLI's docker children included).
 */
export function runStreaming(
  argv: readonly string[],
  options: { env: NodeJS.ProcessEnv; logger: Logger; signal?: AbortSignal; onLine: (line: string) => void; cwd?: string },
): Promise<StreamingOutcome> {
  return new Promise((resolvePromise, reject) => {
    options.signal?.throwIfAborted();
    const child: ChildProcess = spawnLogged(argv, {
      env: options.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      logger: options.logger,
    });
    let stdout = '';
    const kill = (): void => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    };
    options.signal?.addEventListener('abort', kill, { once: true });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      stdout += `${line}\n`;
      if (!line.startsWith('{"outcome"')) options.onLine(line);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => options.onLine(line));
    let spawnError: Error | undefined;
    child.on('error', (error) => (spawnError = error));
    child.on('close', (code, signal) => {
      options.signal?.removeEventListener('abort', kill);
      if (options.signal?.aborted) reject(options.signal.reason as Error);
      else if (spawnError) reject(new ExecError(argv, null, spawnError.message, stdout, { cause: spawnError }));
      else resolvePromise({ code, signal, stdout });
    });
  });
}
