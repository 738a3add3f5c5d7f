// Waiting for an environment to reach a phase, with live progress on stderr.
import { ApiError, type Environment, type EnvironmentPhase, type WarrenClient } from '@warren/api';
import { WarrenError, sleep } from '@warren/base';
import { ProgressLine, describeEnvironment } from './progress.js';

/** The environment reached `Failed` (or another phase that ends the wait unsuccessfully). Not retryable. */
export class WaitFailedError extends WarrenError {
  constructor(readonly environment: Environment) {
    const failed = environment.status.conditions.find((condition) => condition.status === 'False');
    const detail = environment.status.message ?? (failed ? `${failed.reason}: ${failed.message}` : 'no details');
    super('EnvironmentFailed', 500, `environment ${environment.metadata.name} is ${environment.status.phase}: ${detail}`, {
      retryable: false,
    });
  }
}

/**
 * Waits until the environment's `status.phase` is one of `targets` (or it is deleted, when `targets`
 * includes `Deleted`), following a watch stream and showing progress lines on stderr.
 * @returns the environment as last seen (undefined when it was deleted).
 * @throws {WaitFailedError} when it reaches `Failed`; {WarrenError} `Timeout` after `timeoutSeconds`.
 */
export async function waitForPhase(
  client: WarrenClient,
  start: Environment,
  targets: readonly EnvironmentPhase[],
  timeoutSeconds: number,
  progress = new ProgressLine(),
): Promise<Environment | undefined> {
  const deadline = AbortSignal.timeout(timeoutSeconds * 1000);
  let current: Environment | undefined = start;
  const settled = (environment: Environment | undefined): boolean => {
    if (!environment) return targets.includes('Deleted');
    progress.update(describeEnvironment(environment));
    if (targets.includes(environment.status.phase) && environment.status.observedGeneration >= environment.metadata.generation) return true;
    if (environment.status.phase === 'Failed' && environment.status.observedGeneration >= environment.metadata.generation) {
      throw new WaitFailedError(environment);
    }
    return false;
  };
  try {
    while (!settled(current)) {
      if (deadline.aborted) throw timeoutError(current, timeoutSeconds);
      try {
        for await (const event of client.watch('Environment', { resourceVersion: current!.metadata.resourceVersion, signal: deadline })) {
          if (event.type === 'BOOKMARK' || event.object.metadata.id !== current!.metadata.id) continue;
          current = event.type === 'DELETED' ? undefined : event.object;
          if (settled(current)) return current;
        }
      } catch (error) {
        if (deadline.aborted) throw timeoutError(current, timeoutSeconds);
        if (!(error instanceof ApiError) || (error.code !== 410 && error.code < 500)) throw error;
        await sleep(500, deadline).catch(() => {});
      }
      // The stream ended (server restart, 410): read the object again and resume from it.
      try {
        current = await client.get('Environment', current!.metadata.id);
      } catch (error) {
        if (error instanceof ApiError && error.code === 404) current = undefined;
        else if (!(error instanceof ApiError && error.code >= 500)) throw error;
      }
    }
    return current;
  } finally {
    progress.done();
  }
}

function timeoutError(environment: Environment | undefined, seconds: number): WarrenError {
  const where = environment ? ` (still ${environment.status.phase})` : '';
  return new WarrenError(
    'Timeout',
    504,
    `timed out after ${seconds} s waiting for the environment${where}; it keeps going in the background: see "warren env get"`,
  );
}
