import { describe, expect, it } from 'vitest';
import { InvalidError } from '@warren/base';
import { LXCFS_VIEW_PATHS } from './lxcfs.js';
import { DOCKER_DEFAULT_CAPABILITIES, buildOciConfig, defaultRlimits, readHardLimit, type ContainerConfigInput } from './oci-spec.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max processes             96365                96365                processes
Max open files            1024                 20000                files
`;

function input(overrides: Partial<ContainerConfigInput> = {}): ContainerConfigInput {
  return {
    rootfsPath: '/var/lib/warren/environments/e1/rootfs',
    hostname: 'e1',
    process: { args: ['/bin/sh'], env: ['PATH=/usr/bin:/bin'], cwd: '/workspaces/repo', uid: 0, gid: 0 },
    idMapping: { hostId: 100_000, size: 65_536 },
    networkNamespacePath: '/run/netns/warren-e1',
    userNamespacePath: '/run/warren/userns/warren-e1',
    cgroupsPath: '/warren/e1',
    mounts: [
      { source: '/var/lib/warren/environments/e1/workspace', destination: '/workspaces/repo' },
      { source: '/var/lib/warren/environments/e1/resolv.conf', destination: '/etc/resolv.conf', readonly: true },
    ],
    rlimits: defaultRlimits(LIMITS),
    ...overrides,
  };
}

describe('buildOciConfig', () => {
  it('maps container root to the host id range in a joined user namespace and the given netns', () => {
    const config = buildOciConfig(input());
    expect(config.ociVersion).toBe('1.0.2');
    expect(config.linux.uidMappings).toEqual([{ containerID: 0, hostID: 100_000, size: 65_536 }]);
    expect(config.linux.gidMappings).toEqual([{ containerID: 0, hostID: 100_000, size: 65_536 }]);
    expect(config.linux.namespaces).toEqual([
      { type: 'user', path: '/run/warren/userns/warren-e1' },
      { type: 'mount' },
      { type: 'pid' },
      { type: 'ipc' },
      { type: 'uts' },
      { type: 'network', path: '/run/netns/warren-e1' },
    ]);
    expect(config.root).toEqual({ path: '/var/lib/warren/environments/e1/rootfs', readonly: false });
    expect(config.hostname).toBe('e1');
    expect(config.linux.cgroupsPath).toBe('/warren/e1');
  });

  it("grants Docker's capabilities, not ambient, and allows privilege gain for sudo", () => {
    const { process } = buildOciConfig(input());
    expect(DOCKER_DEFAULT_CAPABILITIES).toHaveLength(14);
    for (const set of ['bounding', 'effective', 'permitted'] as const) {
      expect([...process.capabilities[set]].sort()).toEqual([...DOCKER_DEFAULT_CAPABILITIES].sort());
    }
    expect(process.capabilities.ambient).toEqual([]);
    expect(process.capabilities.inheritable).toEqual([]);
    expect(process.capabilities.bounding).not.toContain('CAP_SYS_ADMIN');
    expect(process.noNewPrivileges).toBe(false);
    expect(process.user).toEqual({ uid: 0, gid: 0 });
    expect(process.terminal).toBe(false);
  });

  it('keeps rlimits within the host hard limit', () => {
    expect(readHardLimit('Max open files', LIMITS)).toBe(20_000);
    expect(readHardLimit('Max cpu time', LIMITS)).toBeUndefined();
    expect(buildOciConfig(input()).process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 20_000, soft: 20_000 }]);
    const big = LIMITS.replace('20000', '4000000');
    expect(defaultRlimits(big)).toEqual([{ type: 'RLIMIT_NOFILE', hard: 1_048_576, soft: 1_048_576 }]);
  });

  it('has the standard mounts then the caller bind mounts', () => {
    const { mounts } = buildOciConfig(input());
    expect(mounts.map((mount) => mount.destination)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
      '/workspaces/repo',
      '/etc/resolv.conf',
    ]);
    expect(mounts.find((mount) => mount.destination === '/dev/pts')?.options).toContain('newinstance');
    expect(mounts.find((mount) => mount.destination === '/sys')).toMatchObject({
      type: 'sysfs',
      options: expect.arrayContaining(['ro']) as unknown,
    });
    expect(mounts.at(-2)).toEqual({
      destination: '/workspaces/repo',
      type: 'bind',
      source: '/var/lib/warren/environments/e1/workspace',
      options: ['rbind', 'rprivate'],
    });
    expect(mounts.at(-1)?.options).toEqual(['rbind', 'rprivate', 'ro']);
  });

  it('binds the lxcfs views over /proc and /sys files after /proc and /sys, before the caller mounts', () => {
    const { mounts } = buildOciConfig(input({ procViews: { root: '/var/lib/warren/lxcfs/root/', paths: LXCFS_VIEW_PATHS } }));
    expect(mounts.map((mount) => mount.destination)).toEqual([
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
      '/proc/cpuinfo',
      '/proc/diskstats',
      '/proc/meminfo',
      '/proc/stat',
      '/proc/swaps',
      '/proc/uptime',
      '/sys/devices/system/cpu/online',
      '/workspaces/repo',
      '/etc/resolv.conf',
    ]);
    expect(mounts.find((mount) => mount.destination === '/proc/meminfo')).toEqual({
      destination: '/proc/meminfo',
      type: 'bind',
      source: '/var/lib/warren/lxcfs/root/proc/meminfo',
      options: ['bind', 'rprivate', 'ro', 'nosuid', 'nodev', 'noexec'],
    });
    expect(mounts.find((mount) => mount.destination === '/sys/devices/system/cpu/online')?.source).toBe(
      '/var/lib/warren/lxcfs/root/sys/devices/system/cpu/online',
    );
  });

  it('binds only the view paths lxcfs serves, and none without procViews', () => {
    const some = buildOciConfig(input({ procViews: { root: '/lxcfs', paths: ['/proc/meminfo'] } }));
    expect(some.mounts.filter((mount) => mount.source?.startsWith('/lxcfs/')).map((mount) => mount.destination)).toEqual(['/proc/meminfo']);
    const none = buildOciConfig(input());
    expect(none.mounts.some((mount) => mount.destination.startsWith('/proc/'))).toBe(false);
  });

  it('rejects view paths outside /proc and /sys and a relative lxcfs root', () => {
    let error: unknown;
    try {
      buildOciConfig(input({ procViews: { root: 'lxcfs', paths: ['/etc/passwd', '/proc/../etc/shadow', '/proc/meminfo'] } }));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidError);
    expect((error as InvalidError).causes.map((cause) => cause.field)).toEqual([
      'procViews.root',
      'procViews.paths[0]',
      'procViews.paths[1]',
    ]);
  });

  it("adds a bind mount's own options after rbind/rprivate/ro, keeping the caller's order", () => {
    const { mounts } = buildOciConfig(
      input({
        mounts: [
          { source: '/var/lib/warren/environments/e1/agent', destination: '/dev/.warren', options: ['nosuid', 'nodev', 'noexec'] },
          { source: '/var/lib/warren/bin/warren-init-abc', destination: '/dev/.warren/init', readonly: true, options: ['nosuid', 'nodev'] },
        ],
      }),
    );
    expect(mounts.slice(-2)).toEqual([
      {
        destination: '/dev/.warren',
        type: 'bind',
        source: '/var/lib/warren/environments/e1/agent',
        options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'noexec'],
      },
      {
        destination: '/dev/.warren/init',
        type: 'bind',
        source: '/var/lib/warren/bin/warren-init-abc',
        options: ['rbind', 'rprivate', 'ro', 'nosuid', 'nodev'],
      },
    ]);
  });

  it('binds /sys read-only when the user namespace is created by the runtime (netns not owned)', () => {
    const config = buildOciConfig(input({ userNamespacePath: undefined }));
    expect(config.linux.namespaces[0]).toEqual({ type: 'user' });
    expect(config.mounts.find((mount) => mount.destination === '/sys')).toEqual({
      destination: '/sys',
      type: 'bind',
      source: '/sys',
      options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'],
    });
  });

  it("applies Docker's masked and read-only paths, seccomp and a default device deny", () => {
    const { linux } = buildOciConfig(input());
    expect(linux.maskedPaths).toEqual(expect.arrayContaining(['/proc/kcore', '/proc/keys', '/sys/firmware']) as unknown);
    expect(linux.readonlyPaths).toEqual(['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']);
    expect(linux.seccomp.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(linux.resources.devices).toEqual([{ allow: false, access: 'rwm' }]);
    const withLimits = buildOciConfig(input({ resources: { memory: { limit: 1 << 30 }, pids: { limit: 512 } } }));
    expect(withLimits.linux.resources).toEqual({
      memory: { limit: 1 << 30 },
      pids: { limit: 512 },
      devices: [{ allow: false, access: 'rwm' }],
    });
  });

  it('passes the process through', () => {
    const config = buildOciConfig(
      input({ process: { args: ['sleep', '1'], env: ['A=1'], cwd: '/', uid: 1000, gid: 1000, additionalGids: [27], terminal: true } }),
    );
    expect(config.process).toMatchObject({
      args: ['sleep', '1'],
      env: ['A=1'],
      cwd: '/',
      user: { uid: 1000, gid: 1000, additionalGids: [27] },
      terminal: true,
    });
  });

  it('rejects invalid input with one cause per field', () => {
    const bad = input({
      rootfsPath: 'relative',
      process: { args: [], env: ['NOEQUALS'], cwd: 'x', uid: 70_000, gid: 0 },
      idMapping: { hostId: 0, size: 65_536 },
    });
    let error: unknown;
    try {
      buildOciConfig(bad);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidError);
    expect((error as InvalidError).reason).toBe('InvalidContainerConfig');
    expect((error as InvalidError).causes.map((cause) => cause.field).sort()).toEqual(
      ['idMapping.hostId', 'process.args', 'process.cwd', 'process.env[0]', 'process.uid', 'rootfsPath'].sort(),
    );
  });
});
