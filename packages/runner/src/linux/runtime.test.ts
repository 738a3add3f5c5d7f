import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CrunRuntime, DEFAULT_CRUN_STATE_ROOT, hybridUnifiedMount } from './crun-runtime.js';
import { RuncRuntime } from './runc-runtime.js';
import { RoutedOciRuntime } from './runtime-selection.js';

describe('hybridUnifiedMount', () => {
  let root = '';
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'warren-cgroup-root-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('names <root>/unified on a hybrid layout only', async () => {
    expect(hybridUnifiedMount(root)).toBeNull(); // v1 only
    await mkdir(join(root, 'unified'));
    await writeFile(join(root, 'unified', 'cgroup.controllers'), 'hugetlb\n');
    expect(hybridUnifiedMount(root)).toBe(join(root, 'unified'));
    await writeFile(join(root, 'cgroup.controllers'), 'cpu memory\n'); // pure v2 at the root
    expect(hybridUnifiedMount(root)).toBeNull();
  });
});

/** Exposes the command line a runtime call would run. */
class ProbeCrun extends CrunRuntime {
  commandLine(...args: string[]): string[] {
    return this.argv(...args);
  }
}

describe('CrunRuntime command line', () => {
  it('wraps every call in a private mount namespace without the cgroup2 mount on hybrid hosts', () => {
    const crun = new ProbeCrun({ stateRoot: '/tmp/crun-root', hybridUnifiedMount: '/sys/fs/cgroup/unified' });
    expect(crun.commandLine('state', 'x')).toEqual([
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'umount "$1" 2>/dev/null; shift; exec "$@"',
      'warren-crun',
      '/sys/fs/cgroup/unified',
      'crun',
      '--root',
      '/tmp/crun-root',
      '--cgroup-manager=cgroupfs',
      'state',
      'x',
    ]);
  });

  it('runs crun directly elsewhere, with its own state root by default', () => {
    const crun = new ProbeCrun({ hybridUnifiedMount: null });
    expect(crun.stateRoot).toBe(DEFAULT_CRUN_STATE_ROOT);
    expect(crun.commandLine('list')).toEqual(['crun', '--root', DEFAULT_CRUN_STATE_ROOT, '--cgroup-manager=cgroupfs', 'list']);
  });
});

describe('RoutedOciRuntime', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-routed-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('sends new containers to the first runtime and existing ones to the runtime whose state root holds them', async () => {
    const crun = new CrunRuntime({ stateRoot: join(dir, 'crun'), hybridUnifiedMount: null });
    const runc = new RuncRuntime({ stateRoot: join(dir, 'runc') });
    const routed = new RoutedOciRuntime([crun, runc]);
    expect(routed.name).toBe('crun');
    expect(routed.runtimeOf('warren-new')).toBe(crun);
    await mkdir(join(dir, 'runc', 'warren-old'), { recursive: true });
    expect(routed.runtimeOf('warren-old')).toBe(runc);
    await mkdir(join(dir, 'crun', 'warren-both'), { recursive: true });
    await mkdir(join(dir, 'runc', 'warren-both'), { recursive: true });
    expect(routed.runtimeOf('warren-both')).toBe(crun);
    expect(routed.runtimeOf('../runc/warren-old')).toBe(crun); // never a path outside the roots
  });
});
