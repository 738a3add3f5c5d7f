// Runs a real container with runc and with crun (on hybrid hosts through its private-mount-namespace
// wrapper): busybox rootfs shared through an idmapped lower layer + overlay, a user namespace, a prepared
// netns, Docker's seccomp profile. Needs root, runc, crun, busybox-static, cc.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from './exec.js';
import {
  createEnvironmentNamespaces,
  deleteEnvironmentNamespaces,
  ensureIdmapHelper,
  findMount,
  readMountInfo,
  unmountRecursive,
} from './idmap.js';
import { buildOciConfig } from './oci-spec.js';
import { mountRootfs, unmountRootfs, type RootfsLayout } from './overlay.js';
import { CliOciRuntime } from './cli-runtime.js';
import { CrunRuntime, hybridUnifiedMount } from './crun-runtime.js';
import { RuncRuntime } from './runc-runtime.js';
import { RoutedOciRuntime, selectOciRuntime } from './runtime-selection.js';

interface Output {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Quotes one word for sh(1) (script(1) runs its command through the shell; crun's argv holds a script). */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function collect(child: ChildProcess, input?: string): Promise<Output> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin?.end(input);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe.each([
  { name: 'runc', make: () => new RuncRuntime({ stateRoot: '/run/warren/runc-test' }) },
  { name: 'crun', make: () => new CrunRuntime({ stateRoot: '/run/warren/crun-test' }) },
])('$name with an idmapped overlay rootfs', ({ name, make }) => {
  const suffix = `${process.pid}-${name}`;
  const hostId = 1_000_000 + (process.pid % 500) * 65_536;
  const idMapping = { hostId, size: 65_536 };
  const netnsName = `warren-test-${suffix}`;
  const containerId = `warren-test-${suffix}`;
  const cgroupsPath = `/warren-test-${suffix}`;
  const namespaces = { userNamespacePath: `/run/warren/userns/${netnsName}`, networkNamespacePath: `/run/netns/${netnsName}` };
  let dir = '';
  let layout: RootfsLayout;
  let bundle = '';
  const runtime = make();
  /** What the runtime binary itself reports (`runc state` / `crun state`), for comparison with the file reader. */
  const cliState = (id: string): Promise<unknown> => CliOciRuntime.prototype.state.call(runtime, id);
  const run = async (args: string[], options: { uid?: number; gid?: number; env?: string[] } = {}): Promise<Output> =>
    collect(await runtime.exec(containerId, { args, ...options }));

  beforeAll(async () => {
    dir = await mkdtemp('/tmp/warren-runtime-');
    await chmod(dir, 0o755); // the container's mapped root must traverse it to reach the rootfs
    const lower = join(dir, 'layer');
    for (const sub of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'tmp', 'etc', 'root', 'home/dev', 'workspace']) {
      await mkdir(join(lower, sub), { recursive: true });
    }
    await chmod(join(lower, 'tmp'), 0o1777);
    await copyFile('/bin/busybox', join(lower, 'bin/busybox'));
    await chmod(join(lower, 'bin/busybox'), 0o755);
    await exec(['chroot', lower, '/bin/busybox', '--install', '-s']);
    await writeFile(join(lower, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000:dev:/home/dev:/bin/sh\n');
    await writeFile(join(lower, 'etc/group'), 'root:x:0:\ntty:x:5:\ndev:x:1000:\n');
    // A file each for resolv.conf/hosts/hostname, as the runner provides them.
    const files = join(dir, 'files');
    await mkdir(files);
    await writeFile(join(files, 'resolv.conf'), 'nameserver 10.200.0.1\n');
    await writeFile(join(files, 'hosts'), '127.0.0.1 localhost\n');
    await writeFile(join(files, 'hostname'), 'warren-test\n');

    layout = {
      lowerDirs: [lower],
      lowerMountDir: join(dir, 'lower'),
      upperDir: join(dir, 'upper'),
      workDir: join(dir, 'work'),
      target: join(dir, 'rootfs'),
      idMapping,
    };
    const helper = await ensureIdmapHelper(join(dir, 'bin'));
    await mountRootfs(layout, helper);
    await mountRootfs(layout, helper); // idempotent: a second call changes nothing

    await createEnvironmentNamespaces(helper, idMapping, namespaces);
    await createEnvironmentNamespaces(helper, idMapping, namespaces); // idempotent
    await exec(['ip', '-n', netnsName, 'link', 'set', 'lo', 'up']);

    bundle = join(dir, 'bundle');
    await mkdir(bundle);
    const config = buildOciConfig({
      rootfsPath: layout.target,
      hostname: 'warren-test',
      process: {
        // Init survives SIGTERM (it traps it and records it), so only the SIGKILL after the grace period ends it.
        args: ['/bin/sh', '-c', 'trap "echo got-term >> /tmp/term.log" TERM; echo ready > /tmp/ready; while true; do sleep 1; done'],
        env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'WARREN_TEST=1'],
        cwd: '/',
        uid: 0,
        gid: 0,
      },
      idMapping,
      ...namespaces,
      cgroupsPath,
      mounts: [
        { source: join(files, 'resolv.conf'), destination: '/etc/resolv.conf', readonly: true },
        { source: join(files, 'hosts'), destination: '/etc/hosts', readonly: true },
        { source: join(files, 'hostname'), destination: '/etc/hostname', readonly: true },
      ],
    });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(config, null, 2));
    const pid = await runtime.run(bundle, containerId);
    expect(pid).toBeGreaterThan(0);
  });

  afterAll(async () => {
    const failures: unknown[] = [];
    const attempt = async (step: () => Promise<unknown>): Promise<void> => {
      await step().catch((error: unknown) => failures.push(error));
    };
    await attempt(() => runtime.delete(containerId, { force: true }));
    if (layout) await attempt(() => unmountRootfs(layout, { detach: true }));
    if (dir) await attempt(() => unmountRecursive(dir, { detach: true }));
    await attempt(() => deleteEnvironmentNamespaces(namespaces));
    for (const hierarchy of ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd', 'unified']) {
      await attempt(() => rm(`/sys/fs/cgroup/${hierarchy}${cgroupsPath}`, { recursive: false, force: true }).catch(() => undefined));
    }
    if (dir) await attempt(() => rm(dir, { recursive: true, force: true }));
    for (const stateDir of [runtime.stateRoot, `${runtime.stateRoot}-exec`])
      await attempt(() => rm(stateDir, { recursive: true, force: true }));
    if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
  });

  it('runs the container with root mapped and the rootfs owned by root inside', async () => {
    expect((await runtime.state(containerId))?.status).toBe('running');
    expect(await runtime.list()).toContain(containerId);
    expect(await run(['id', '-u'])).toEqual({ code: 0, stdout: '0\n', stderr: '' });
    expect((await run(['stat', '-c', '%u:%g', '/etc/passwd', '/'])).stdout).toBe('0:0\n0:0\n');
    expect((await run(['cat', '/proc/self/uid_map'])).stdout.trim().split(/\s+/)).toEqual(['0', String(hostId), '65536']);
    // Host view: the merged root is owned by the mapped root.
    expect((await stat(layout.target)).uid).toBe(hostId);
  });

  it('mounts the files the runner provides, the hostname and the netns', async () => {
    expect((await run(['cat', '/etc/resolv.conf'])).stdout).toBe('nameserver 10.200.0.1\n');
    expect((await run(['hostname'])).stdout).toBe('warren-test\n');
    const hostNetns = await stat(`/run/netns/${netnsName}`);
    expect((await run(['stat', '-L', '-c', '%i', '/proc/self/ns/net'])).stdout.trim()).toBe(String(hostNetns.ino));
    // The netns is owned by the container's user namespace, so sysfs mounts and CAP_NET_RAW applies (ping).
    expect((await run(['grep', ' /sys ', '/proc/self/mounts'])).stdout).toMatch(/^sysfs \/sys sysfs ro,/);
    expect((await run(['ping', '-c', '1', '-W', '5', '127.0.0.1'])).code).toBe(0);
    // Its own cgroups are visible read-only.
    expect((await run(['sh', '-c', 'cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes'])).code).toBe(0);
    expect((await run(['mkdir', '/sys/fs/cgroup/pids/x'])).code).not.toBe(0);
  });

  it('stores files written by container root in the upper dir as the mapped host root', async () => {
    expect((await run(['sh', '-c', 'echo hello > /root/new && chown 1000:1000 /home/dev && touch /home/dev/x'])).code).toBe(0);
    const created = await stat(join(layout.upperDir, 'root/new'));
    expect([created.uid, created.gid]).toEqual([hostId, hostId]);
    expect(await readFile(join(layout.upperDir, 'root/new'), 'utf8')).toBe('hello\n');
    expect((await stat(join(layout.upperDir, 'home/dev'))).uid).toBe(hostId + 1000);
    // The shared layer is untouched.
    expect(existsSync(join(layout.lowerDirs[0]!, 'root/new'))).toBe(false);
    expect((await stat(join(layout.lowerDirs[0]!, 'home/dev'))).uid).toBe(0);
    expect((await stat(join(layout.lowerDirs[0]!, 'etc/passwd'))).uid).toBe(0);
  });

  it('passes stdout, stderr, stdin and the exit code through separately', async () => {
    const result = await run(['sh', '-c', 'echo out; echo err >&2; echo $WARREN_TEST $EXTRA; exit 3'], { env: ['EXTRA=yes'] });
    expect(result).toEqual({ code: 3, stdout: 'out\n1 yes\n', stderr: 'err\n' });
    expect(await collect(await runtime.exec(containerId, { args: ['cat'] }), 'piped\n')).toEqual({
      code: 0,
      stdout: 'piped\n',
      stderr: '',
    });
  });

  it('runs a non-root exec without effective capabilities', async () => {
    const result = await run(['sh', '-c', 'id -u; id -g; grep CapEff /proc/self/status; touch /root/denied'], { uid: 1000, gid: 1000 });
    expect(result.stdout).toBe('1000\n1000\nCapEff:\t0000000000000000\n');
    expect(result.stderr).toMatch(/Permission denied/);
    expect(result.code).not.toBe(0);
  });

  it("applies Docker's capabilities and seccomp profile", async () => {
    const status = (await run(['cat', '/proc/self/status'])).stdout;
    expect(status).toMatch(/^Seccomp:\t2$/m);
    expect(status).toMatch(/^NoNewPrivs:\t0$/m);
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    expect(status).toMatch(/^CapEff:\t00000000a80425fb$/m);
    const unshare = await run(['unshare', '-U', 'true']);
    expect(unshare.code).not.toBe(0);
    expect(unshare.stderr).toMatch(/Operation not permitted/);
    const mount = await run(['mount', '-t', 'tmpfs', 'none', '/mnt']);
    expect(mount.code).not.toBe(0);
    expect(mount.stderr).toMatch(/not permitted|permission denied/i);
    expect((await run(['sh', '-c', 'ls / >/dev/null && echo ok'])).stdout).toBe('ok\n');
  });

  it('rejects exec into a missing container and tty exec without a pty', async () => {
    await expect(runtime.exec('warren-missing', { args: ['true'] })).rejects.toThrow(/does not exist/);
    await expect(runtime.exec(containerId, { args: ['true'], tty: true })).rejects.toThrow(/pty/);
    expect(await runtime.state('warren-missing')).toBeUndefined();
  });

  it('runs a terminal exec when its argv is spawned under a pty (script(1) stands in for node-pty)', async () => {
    const prepared = await runtime.execCommand(containerId, {
      args: ['sh', '-c', 'tty; echo "term=$TERM"; exit 4'],
      env: ['TERM=xterm'],
      tty: true,
    });
    try {
      const result = await exec(['script', '--quiet', '--return', '--command', prepared.argv.map(shellQuote).join(' '), '/dev/null'], {
        okCodes: [4],
      });
      expect(result.stdout).toMatch(/\/dev\/pts\/\d+\r\n/); // \r\n: the pty's onlcr shows it was a terminal
      expect(result.stdout).toMatch(/^term=xterm\r?$/m);
    } finally {
      await prepared.dispose();
    }
    expect(existsSync(prepared.argv[prepared.argv.indexOf('--process') + 1]!)).toBe(false);
  });

  it('is driven through a routed runtime whose primary is the other runtime (adoption after a restart)', async () => {
    const other =
      name === 'crun'
        ? new RuncRuntime({ stateRoot: '/run/warren/runc-test-other' })
        : new CrunRuntime({ stateRoot: '/run/warren/crun-test-other' });
    const routed = new RoutedOciRuntime([other, runtime]);
    expect(routed.runtimeOf(containerId)).toBe(runtime);
    expect(await routed.state(containerId)).toEqual(await runtime.state(containerId));
    expect(await routed.list()).toContain(containerId);
    expect((await collect(await routed.exec(containerId, { args: ['echo', 'routed'] }))).stdout).toBe('routed\n');
  });

  it('pauses and resumes', async () => {
    await runtime.pause(containerId);
    expect((await runtime.state(containerId))?.status).toBe('paused');
    expect(await runtime.state(containerId)).toEqual(await cliState(containerId));
    await runtime.resume(containerId);
    expect((await runtime.state(containerId))?.status).toBe('running');
    expect(await runtime.state(containerId)).toEqual(await cliState(containerId));
  });

  it("reads the same state from its state file as the runtime's `state` command reports, also for created and stopped containers", async () => {
    const other = `${containerId}-b`;
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
      process: { args: string[] };
      linux: Record<string, unknown>;
    };
    const otherBundle = join(dir, 'bundle-b');
    await mkdir(otherBundle, { recursive: true });
    // A second, short-lived container on the same rootfs and namespaces, in a cgroup of its own.
    const linux = { ...config.linux, cgroupsPath: `${cgroupsPath}-b` };
    await writeFile(
      join(otherBundle, 'config.json'),
      JSON.stringify({ ...config, linux, process: { ...config.process, args: ['/bin/true'] } }),
    );
    try {
      await runtime.create(otherBundle, other);
      expect((await runtime.state(other))?.status).toBe('created');
      expect(await runtime.state(other)).toEqual(await cliState(other));
      await runtime.start(other);
      for (let attempt = 0; attempt < 100 && (await runtime.state(other))?.status !== 'stopped'; attempt++)
        await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await runtime.state(other)).toEqual({ id: other, status: 'stopped', pid: 0, bundle: otherBundle });
      expect(await runtime.state(other)).toEqual(await cliState(other));
    } finally {
      await runtime.delete(other, { force: true });
    }
    expect(await runtime.state(other)).toBeUndefined();
  });

  it('stops with a grace period, SIGKILLs a process that traps SIGTERM, and leaves nothing behind', async () => {
    await runtime.stop(containerId, 1);
    expect(await runtime.state(containerId)).toBeUndefined();
    expect(await runtime.list()).not.toContain(containerId);
    // Init received SIGTERM (its trap ran) and survived it, so the SIGKILL ended it.
    expect(await readFile(join(layout.upperDir, 'tmp/term.log'), 'utf8')).toMatch(/got-term/);
    await runtime.stop(containerId, 1); // idempotent
    await runtime.delete(containerId); // idempotent

    await unmountRootfs(layout);
    await unmountRootfs(layout); // idempotent
    const mounts = await readMountInfo();
    expect(mounts.filter((entry) => entry.mountPoint.startsWith(dir))).toEqual([]);
    expect(findMount(mounts, layout.target)).toBeUndefined();
    await deleteEnvironmentNamespaces(namespaces);
    await deleteEnvironmentNamespaces(namespaces); // idempotent
    expect(existsSync(namespaces.networkNamespacePath)).toBe(false);
    expect((await readMountInfo()).filter((entry) => entry.mountPoint.includes(netnsName))).toEqual([]);
    // The environment's disk state survives the stop.
    expect(await readFile(join(layout.upperDir, 'root/new'), 'utf8')).toBe('hello\n');
  });
});

describe('selectOciRuntime', () => {
  const crunStateRoot = `/run/warren/crun-select-test-${process.pid}`;
  const runcStateRoot = `/run/warren/runc-select-test-${process.pid}`;
  afterAll(async () => {
    for (const root of [crunStateRoot, runcStateRoot]) await rm(root, { recursive: true, force: true });
  });

  it('auto picks crun when its self-test passes, and keeps runc as the runtime for adopted containers', async () => {
    const selected = await selectOciRuntime({ crunStateRoot, runcStateRoot });
    expect(selected.name).toBe('crun');
    expect(selected.runtimes.map((runtime) => runtime.name)).toEqual(['crun', 'runc']);
    expect(await selected.list()).toEqual([]); // the self-test container is gone
  });

  it('auto falls back to runc when the crun self-test fails (here: crun without its wrapper on a hybrid host)', async () => {
    const selected = await selectOciRuntime({ crunStateRoot, runcStateRoot, hybridUnifiedMount: null });
    expect(selected.name).toBe(hybridUnifiedMount() === null ? 'crun' : 'runc');
  });

  it('honours an explicit choice without a self-test', async () => {
    expect((await selectOciRuntime({ prefer: 'runc', crunStateRoot, runcStateRoot })).name).toBe('runc');
    expect((await selectOciRuntime({ prefer: 'crun', crunStateRoot, runcStateRoot })).name).toBe('crun');
  });
});
