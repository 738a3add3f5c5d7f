// devcontainer.json lifecycle commands (onCreate, updateContent, postCreate, postStart): run as remoteUser in
// the workspace folder, output appended to the environment's lifecycle log, done-markers kept in the state file.
import { appendFile, mkdir, open as openFile } from 'node:fs/promises';
import type { Environment } from '@warren/api';
import { WarrenError } from '@warren/base';
import type { LifecycleCommand, LifecycleStep } from '../devcontainer/index.js';
import { EnvironmentNotRunningError, type LifecycleOutcome, type StepContext } from '../environment/index.js';
import type { BackendContext } from './context.js';
import { execInEnvironment } from './exec.js';
import { containerId, environmentPaths } from './paths.js';
import { readState, startIdOf, updateState } from './state-file.js';
import { resolveUsersCached } from './users.js';

/**
 * {@link EnvironmentBackend.runLifecycle}: runs the hooks of `stage` (`create`: onCreate, updateContent,
 * postCreate; `start`: postStart), each step's commands in parallel; like the reference CLI, the first failing
 * hook stops the hooks after it. Marks the stage done in the state file either way.
 * @throws {WarrenError} `NotResolved` before resolve; {@link EnvironmentNotRunningError} for `start` without a
 *   running container.
 */
export async function runLifecycle(
  backend: BackendContext,
  environment: Environment,
  stage: 'create' | 'start',
  context: StepContext,
): Promise<LifecycleOutcome> {
  const id = environment.metadata.id;
  const state = await readState(backend.dataDir, id);
  if (!state?.resolved) throw new WarrenError('NotResolved', 500, `environment ${id} has no resolved configuration yet`);
  const { lifecycle } = state.resolved.devcontainer;
  const hooks: Array<[string, LifecycleStep[]]> =
    stage === 'create'
      ? [
          ['onCreateCommand', lifecycle.onCreate],
          ['updateContentCommand', lifecycle.updateContent],
          ['postCreateCommand', lifecycle.postCreate],
        ]
      : [['postStartCommand', lifecycle.postStart]];
  const runtimeState = await backend.runtime.state(containerId(id));
  const startId = runtimeState ? await startIdOf(runtimeState) : undefined;
  if (stage === 'start' && !startId) throw new EnvironmentNotRunningError(id);

  let outcome: LifecycleOutcome = { succeeded: true };
  // Like the reference CLI, the first failing hook stops the hooks after it.
  hooks: for (const [hook, steps] of hooks) {
    for (const step of steps) {
      context.onProgress({ step: 'lifecycle', message: `Running ${hook}` });
      const results = await Promise.all(step.commands.map((command) => runLifecycleCommand(backend, id, hook, step, command, context)));
      const failed = results.find((result) => result.code !== 0);
      if (failed) {
        outcome = { succeeded: false, message: `${hook}${failed.name ? ` "${failed.name}"` : ''} exited with code ${failed.code}` };
        break hooks;
      }
    }
  }
  // Lifecycle commands may add users or groups (useradd, usermod -aG): keep the cache current for the execs after.
  const { containerUser, remoteUser } = state.resolved.devcontainer;
  const users = await resolveUsersCached(environmentPaths(backend.dataDir, id).rootfs, [containerUser, remoteUser], state.users).catch(
    () => undefined,
  );
  await updateState(backend.dataDir, id, (next) => {
    if (users) next.users = users.cache;
    if (stage === 'create') next.lifecycle.createDone = true;
    else if (startId) next.lifecycle.postStartDoneFor = startId;
    if (!outcome.succeeded) next.lifecycle.failure = outcome.message;
    else if (stage === 'create') delete next.lifecycle.failure;
  });
  return outcome;
}

/** Runs one lifecycle command as remoteUser in the workspace folder, appending its output to the log. */
async function runLifecycleCommand(
  backend: BackendContext,
  id: string,
  hook: string,
  step: LifecycleStep,
  command: LifecycleCommand,
  context: StepContext,
): Promise<{ code: number; name?: string }> {
  const paths = environmentPaths(backend.dataDir, id);
  await mkdir(paths.logs, { recursive: true });
  const argv = command.kind === 'shell' ? ['/bin/sh', '-c', command.shell] : command.argv;
  const label = `${hook}${command.name ? ` "${command.name}"` : ''} from ${step.source}`;
  await appendFile(paths.lifecycleLog, `\n=== ${label}: ${command.kind === 'shell' ? command.shell : JSON.stringify(command.argv)} ===\n`);
  const log = await openFile(paths.lifecycleLog, 'a');
  let code: number;
  try {
    const session = await execInEnvironment(backend, id, { argv, tty: false }, context.logger);
    session.stdin.end();
    const write = (chunk: Buffer) => void log.write(chunk).catch(() => {});
    session.stdout.on('data', write);
    session.stderr?.on('data', write);
    const onAbort = () => session.kill();
    context.signal.addEventListener('abort', onAbort, { once: true });
    try {
      code = await session.exit;
    } finally {
      context.signal.removeEventListener('abort', onAbort);
    }
    context.signal.throwIfAborted();
  } finally {
    await log.close();
  }
  await appendFile(paths.lifecycleLog, `=== ${label} exited with code ${code} ===\n`);
  context.logger.info({ hook, name: command.name, code }, 'lifecycle command finished');
  return { code, ...(command.name ? { name: command.name } : {}) };
}
