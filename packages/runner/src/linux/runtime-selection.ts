// Choosing the OCI runtime for new containers (crun when its self-test passes, else runc) and routing calls
// about existing containers to the runtime whose state root holds them.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Logger, silentLogger } from '@warren/base';
import type { CliOciRuntime } from './cli-runtime.js';
import { CrunRuntime } from './crun-runtime.js';
import { RuncRuntime } from './runc-runtime.js';
import type { ContainerExecOptions, ContainerState, OciRuntime, PreparedExec } from './runtime.js';

/**
 * An {@link OciRuntime} over several runtimes with separate state roots: new containers (`create`,
 * `run`) go to the first one; every call naming an existing container goes to the runtime whose state
 * root holds it (`<stateRoot>/<id>`), so containers created by another runtime before a runner restart
 * (e.g. runc before crun was selected) keep being driven by that runtime. `list` is the union.
 */
export class RoutedOciRuntime implements OciRuntime {
  readonly name: string;

  /** @param runtimes the runtime for new containers first, then the others to adopt containers from. */
  constructor(readonly runtimes: readonly [CliOciRuntime, ...CliOciRuntime[]]) {
    this.name = runtimes[0].name;
  }

  /** The runtime whose state root holds `id`; the primary when none does. */
  runtimeOf(id: string): CliOciRuntime {
    const safe = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(id);
    return (safe && this.runtimes.find((runtime) => existsSync(join(runtime.stateRoot, id)))) || this.runtimes[0];
  }

  create(bundleDir: string, id: string): Promise<number> {
    return this.runtimeOf(id).create(bundleDir, id);
  }
  start(id: string): Promise<void> {
    return this.runtimeOf(id).start(id);
  }
  run(bundleDir: string, id: string): Promise<number> {
    return this.runtimeOf(id).run(bundleDir, id);
  }
  exec(id: string, options: ContainerExecOptions): Promise<ChildProcess> {
    return this.runtimeOf(id).exec(id, options);
  }
  execCommand(id: string, options: ContainerExecOptions): Promise<PreparedExec> {
    return this.runtimeOf(id).execCommand(id, options);
  }
  kill(id: string, signal: string, options?: { all?: boolean }): Promise<void> {
    return this.runtimeOf(id).kill(id, signal, options);
  }
  delete(id: string, options?: { force?: boolean }): Promise<void> {
    return this.runtimeOf(id).delete(id, options);
  }
  state(id: string): Promise<ContainerState | undefined> {
    return this.runtimeOf(id).state(id);
  }
  async list(): Promise<string[]> {
    const lists = await Promise.all(this.runtimes.map((runtime) => runtime.list()));
    return [...new Set(lists.flat())];
  }
  pause(id: string): Promise<void> {
    return this.runtimeOf(id).pause(id);
  }
  resume(id: string): Promise<void> {
    return this.runtimeOf(id).resume(id);
  }
}

/** Which OCI runtime to use: `auto` = crun when its self-test passes on this host, else runc. */
export type OciRuntimeChoice = 'auto' | 'runc' | 'crun';

/** Options of {@link selectOciRuntime}. */
export interface SelectOciRuntimeOptions {
  /** Default `auto`. */
  prefer?: OciRuntimeChoice;
  /** State root of runc (default {@link DEFAULT_STATE_ROOT}). */
  runcStateRoot?: string;
  /** State root of crun (default {@link DEFAULT_CRUN_STATE_ROOT}). */
  crunStateRoot?: string;
  /** Overrides {@link CrunRuntimeOptions.hybridUnifiedMount} (tests). */
  hybridUnifiedMount?: string | null;
  logger?: Logger;
}

/**
 * Picks the runtime for new containers and logs the choice: `runc` or `crun` as configured, or with
 * `auto` crun when {@link CrunRuntime.selfTest} passes (on hybrid hosts through its wrapper), runc on
 * any failure. The result is a {@link RoutedOciRuntime} that also drives containers found under the
 * other runtime's state root (created before a restart with another choice).
 * @returns the routed runtime; its `name` is the runtime used for new containers.
 */
export async function selectOciRuntime(options: SelectOciRuntimeOptions = {}): Promise<RoutedOciRuntime> {
  const logger = options.logger ?? silentLogger;
  const prefer = options.prefer ?? 'auto';
  const runc = new RuncRuntime({ stateRoot: options.runcStateRoot, logger });
  const crun = new CrunRuntime({
    stateRoot: options.crunStateRoot,
    logger,
    ...(options.hybridUnifiedMount !== undefined ? { hybridUnifiedMount: options.hybridUnifiedMount } : {}),
  });
  let useCrun = prefer === 'crun';
  let reason = 'configured';
  if (prefer === 'auto') {
    const started = performance.now();
    try {
      await crun.selfTest();
      useCrun = true;
      reason = `crun self-test passed in ${Math.round(performance.now() - started)} ms`;
    } catch (error) {
      reason = `crun self-test failed: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  const routed = useCrun ? new RoutedOciRuntime([crun, runc]) : new RoutedOciRuntime([runc, crun]);
  logger.info(
    { runtime: routed.name, prefer, reason, crunHybridWrapper: useCrun ? crun.hybridUnifiedMount !== null : undefined },
    `OCI runtime for new containers: ${routed.name}`,
  );
  return routed;
}
