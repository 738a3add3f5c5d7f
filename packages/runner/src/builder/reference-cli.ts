// The reference Dev Containers CLI (`devcontainer up` + `devcontainer exec`) on the runner's managed Docker
// engine: the side-by-side baseline of bench/env-start (issue 3 "Benchmark").
import { join, resolve } from 'node:path';
import { mkdir } from 'node:fs/promises';
import { type Logger, silentLogger } from '@warren/base';
import { parseCliResult, referenceCliPath, runStreaming } from './devcontainer-builder.js';
import type { DockerEngine } from './docker-engine.js';
import { DevcontainerBuildError } from './errors.js';

/** Options of {@link referenceUpAndExec}. */
export interface ReferenceUpOptions {
  /** The workspace folder holding `.devcontainer/devcontainer.json` (or `.devcontainer.json`). */
  workspaceDir: string;
  engine: DockerEngine;
  /** A devcontainer.json other than the CLI's default lookup, absolute or relative to `workspaceDir`. */
  configPath?: string;
  /** Leave the container running (default: it is removed with `docker rm -f` after the exec). */
  keepContainer?: boolean;
  /** Receives the CLI's output lines. */
  onLog?: (line: string) => void;
  signal?: AbortSignal;
  logger?: Logger;
}

/** Timings of {@link referenceUpAndExec}, wall-clock milliseconds of each CLI process. */
export interface ReferenceUpResult {
  /** `devcontainer up --remove-existing-container` from spawn to exit. */
  upMs: number;
  /** `devcontainer exec true` from spawn to exit. */
  execMs: number;
  /** The container `up` created (already removed unless `keepContainer`). */
  containerId: string;
}

/**
 * Runs `devcontainer up` and then `devcontainer exec true` for a workspace on the managed engine (started if
 * needed) and times both, as a user of the reference CLI would experience them. The engine runs with
 * `--bridge=none`, so the container has loopback networking only; this does not change the measured path.
 * @returns both durations and the container id.
 * @throws {DevcontainerBuildError} when either command fails (message ends with its output tail).
 * @throws {DockerNotInstalledError}, {DockerEngineError} from the engine.
 */
export async function referenceUpAndExec(options: ReferenceUpOptions): Promise<ReferenceUpResult> {
  const { engine, signal } = options;
  const logger = (options.logger ?? silentLogger).child({ component: 'reference-cli' });
  await engine.ensureRunning(signal);
  const temporaryDir = join(engine.root, 'tmp');
  await mkdir(temporaryDir, { recursive: true });
  const workspaceDir = resolve(options.workspaceDir);
  const common = [
    '--workspace-folder',
    workspaceDir,
    ...(options.configPath ? ['--config', resolve(workspaceDir, options.configPath)] : []),
    '--docker-path',
    engine.dockerCliPath,
    '--user-data-folder',
    join(engine.root, 'cli-data'),
  ];
  const environment = { ...engine.environment(), TMPDIR: temporaryDir };
  const run = async (args: string[]): Promise<{ ms: number; stdout: string }> => {
    const tail: string[] = [];
    const started = performance.now();
    const outcome = await runStreaming([process.execPath, referenceCliPath(), ...args], {
      env: environment,
      logger,
      signal,
      onLine: (line) => {
        tail.push(line);
        if (tail.length > 40) tail.shift();
        options.onLog?.(line);
      },
    });
    const ms = performance.now() - started;
    if (outcome.code !== 0) {
      const result = parseCliResult(outcome.stdout);
      throw new DevcontainerBuildError(
        `devcontainer ${args[0]} failed${result?.message ? `: ${result.message}` : ` with code ${outcome.code ?? outcome.signal}`}`,
        tail.join('\n'),
      );
    }
    return { ms, stdout: outcome.stdout };
  };

  const up = await run(['up', ...common, '--remove-existing-container', '--log-format', 'text']);
  const containerId = parseCliResult(up.stdout)?.containerId ?? '';
  try {
    const execution = await run(['exec', ...common, 'true']);
    logger.info({ upMs: Math.round(up.ms), execMs: Math.round(execution.ms) }, 'reference devcontainer up and exec timed');
    return { upMs: up.ms, execMs: execution.ms, containerId };
  } finally {
    if (!options.keepContainer && containerId) await engine.docker(['rm', '--force', containerId]).catch(() => undefined);
  }
}
