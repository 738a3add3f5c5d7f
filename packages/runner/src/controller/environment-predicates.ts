// Which Environment changes wake the runner's reconcile of that environment (the event predicate of its informer).
import { changedPredicate, type Environment, type EventPredicate } from '@warren/api';

/**
 * The fields of an environment whose change can alter what the runner must do: the spec (and its
 * `generation`), `metadata.deletionTime`, and `status.runnerId` (the scheduler's placement). The
 * EnvironmentReconciler decides from these plus the host, and from status fields the runner writes itself
 * (phase, observedGeneration, its conditions, devcontainer, ports …), see "One owner per status field" in
 * docs/design/0009-controller-kit.md.
 */
export function runnerRelevantFields(environment: Environment): unknown {
  return {
    generation: environment.metadata.generation,
    deletionTime: environment.metadata.deletionTime,
    spec: environment.spec,
    runnerId: environment.status.runnerId,
  };
}

/**
 * Passes every event except an update that leaves {@link runnerRelevantFields} as they were. So these do not
 * wake a reconcile pass: keepalives (`status.lastActivityTime`), conditions written by the server's controllers
 * (`Scheduled`, `StoppedForInactivity`), and the runner's own status writes (the reconciler's and the ports
 * watcher's, recorded in the cache as they are answered, or arriving as watch events). Added, deleted and
 * resync events always pass.
 */
export const runnerMustAct: EventPredicate<Environment> = changedPredicate(runnerRelevantFields);
