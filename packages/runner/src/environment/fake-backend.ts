// An in-memory EnvironmentBackend for unit tests of the reconciler, the work queue and the access API.
/* eslint-disable @typescript-eslint/require-await -- it implements an async interface without doing I/O */
import { PassThrough } from 'node:stream';
import type { Environment, EnvironmentStats } from '@warren/api';
import type { Logger } from '@warren/base';
import {
  type EnvironmentBackend,
  EnvironmentNotRunningError,
  type ExecRequest,
  type ExecSession,
  type LifecycleOutcome,
  type ObservedEnvironment,
  type ResolvedEnvironment,
  type StepContext,
} from './backend.js';

/** The host state the fake keeps for one environment. */
export interface FakeHostEnvironment {
  contentReady: boolean;
  resolved?: ResolvedEnvironment;
  container: 'absent' | 'running';
  starts: number;
  startedTime?: string;
  createDone: boolean;
  postStartDoneFor?: string;
  createRuns: number;
  postStartRuns: number;
  failure?: string;
  /** OOM kills in the running container (set by tests; a start resets it, as a new cgroup would). */
  memory?: ObservedEnvironment['memory'];
}

/**
 * A backend whose "host" is a Map. Failures are injected per step with {@link failNext}; exec runs a
 * tiny built-in interpreter (`echo ARGS`, `exit N`, `cat`) so protocol tests need no container.
 */
export class FakeBackend implements EnvironmentBackend {
  readonly host = new Map<string, FakeHostEnvironment>();
  /** Step name → errors to throw on the next calls (first in, first out). */
  private readonly failures = new Map<string, Error[]>();
  /** Resolution returned by `resolve`. */
  resolution: ResolvedEnvironment = {
    image: 'example.test/base:1',
    imageDigest: 'sha256:0000',
    remoteUser: 'vscode',
    containerUser: 'vscode',
    workspaceFolder: '/workspaces/repo',
    ports: [],
    unsupported: [],
  };
  /** Outcome of `create` lifecycle commands. */
  createOutcome: LifecycleOutcome = { succeeded: true };
  /** Every step called, in order, as `step:id`. */
  readonly calls: string[] = [];
  logPath = '/nonexistent/lifecycle.log';

  /** Makes the next call of `step` throw `error`. */
  failNext(step: string, error: Error): void {
    const list = this.failures.get(step) ?? [];
    list.push(error);
    this.failures.set(step, list);
  }

  private step(step: string, id: string): void {
    this.calls.push(`${step}:${id}`);
    const error = this.failures.get(step)?.shift();
    if (error) throw error;
  }

  private entry(id: string): FakeHostEnvironment {
    let entry = this.host.get(id);
    if (!entry) {
      entry = { contentReady: false, container: 'absent', starts: 0, createDone: false, createRuns: 0, postStartRuns: 0 };
      this.host.set(id, entry);
    }
    return entry;
  }

  async observe(environmentId: string): Promise<ObservedEnvironment> {
    const entry = this.host.get(environmentId);
    if (!entry) return { exists: false, contentReady: false, container: { state: 'absent' }, lifecycle: { createDone: false } };
    const running = entry.container === 'running';
    return {
      exists: true,
      contentReady: entry.contentReady,
      commit: entry.contentReady ? 'abc123' : undefined,
      ...(entry.resolved ? { resolved: entry.resolved } : {}),
      container: running
        ? { state: 'running', startId: `start-${entry.starts}`, startedTime: entry.startedTime ?? new Date().toISOString() }
        : { state: 'absent' },
      ...(running && entry.memory ? { memory: entry.memory } : {}),
      lifecycle: {
        createDone: entry.createDone,
        ...(entry.postStartDoneFor ? { postStartDoneFor: entry.postStartDoneFor } : {}),
        ...(entry.failure ? { failure: entry.failure } : {}),
      },
    };
  }

  async prepareContent(environment: Environment, context: StepContext): Promise<{ commit?: string }> {
    this.step('prepareContent', environment.metadata.id);
    context.onProgress({ step: 'clone', message: 'cloning' });
    this.entry(environment.metadata.id).contentReady = true;
    return { commit: 'abc123' };
  }

  async resolve(environment: Environment, context: StepContext): Promise<ResolvedEnvironment> {
    this.step('resolve', environment.metadata.id);
    context.onProgress({ step: 'image', bytesDone: 10, bytesTotal: 100 });
    this.entry(environment.metadata.id).resolved = this.resolution;
    return this.resolution;
  }

  async start(environment: Environment): Promise<void> {
    this.step('start', environment.metadata.id);
    const entry = this.entry(environment.metadata.id);
    if (entry.container === 'running') return;
    entry.container = 'running';
    entry.starts++;
    entry.memory = { oomKills: 0 };
    entry.startedTime = new Date().toISOString();
  }

  async runLifecycle(environment: Environment, stage: 'create' | 'start'): Promise<LifecycleOutcome> {
    this.step(`lifecycle-${stage}`, environment.metadata.id);
    const entry = this.entry(environment.metadata.id);
    if (stage === 'create') {
      entry.createRuns++;
      entry.createDone = true;
      if (!this.createOutcome.succeeded) entry.failure = this.createOutcome.message;
      return this.createOutcome;
    }
    entry.postStartRuns++;
    entry.postStartDoneFor = `start-${entry.starts}`;
    return { succeeded: true };
  }

  async stop(environmentId: string): Promise<void> {
    this.step('stop', environmentId);
    const entry = this.host.get(environmentId);
    if (entry) entry.container = 'absent';
  }

  async remove(environmentId: string): Promise<void> {
    this.step('remove', environmentId);
    this.host.delete(environmentId);
  }

  async cleanupOrphans(knownIds: ReadonlySet<string>): Promise<string[]> {
    const removed = [...this.host.keys()].filter((id) => !knownIds.has(id));
    for (const id of removed) this.host.delete(id);
    return removed;
  }

  async listEnvironments(): Promise<string[]> {
    return [...this.host.keys()];
  }

  async exec(environmentId: string, request: ExecRequest, _logger: Logger): Promise<ExecSession> {
    if (this.host.get(environmentId)?.container !== 'running') throw new EnvironmentNotRunningError(environmentId);
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const [command, ...args] = request.argv;
    const exit = new Promise<number>((resolve) => {
      if (command === 'echo') {
        stdout.end(`${args.join(' ')}\n`);
        stderr.end();
        resolve(0);
      } else if (command === 'exit') {
        stdout.end();
        stderr.end(`exiting ${args[0] ?? '0'}\n`);
        resolve(Number(args[0] ?? 0));
      } else if (command === 'cat') {
        stdin.pipe(stdout);
        stderr.end();
        stdout.on('end', () => resolve(0));
      } else {
        stdout.end();
        stderr.end(`${command ?? ''}: not found\n`);
        resolve(127);
      }
    });
    return { stdin, stdout, stderr, exit, kill: () => stdin.destroy() };
  }

  lifecycleLogPath(): string {
    return this.logPath;
  }

  /** Usage reported by {@link stats} for running environments (tests change it); counters in seconds and bytes. */
  statsSample: Omit<EnvironmentStats, 'environmentId' | 'sampleTime'> = {
    cpuUsageSeconds: 1.5,
    cpuLimitMillicores: 500,
    memoryUsageBytes: 64 * 1024 * 1024,
    memoryLimitBytes: 512 * 1024 * 1024,
    pids: 3,
  };

  async stats(environmentId: string): Promise<EnvironmentStats | undefined> {
    if (this.host.get(environmentId)?.container !== 'running') return undefined;
    return { environmentId, sampleTime: new Date().toISOString(), ...this.statsSample };
  }
}
