// A Debian devcontainer-like image (scripts/test-images.sh "base") in a Warren container: useradd,
// sudo (setuid + setgroups inside the user namespace), bash/glibc forks (clone3 → ENOSYS fallback).
// Needs root, runc, cc, and the cached test images (built by `scripts/test-images.sh build`, as CI does).
import type { ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec } from './exec.js';
import { createEnvironmentNamespaces, deleteEnvironmentNamespaces, ensureIdmapHelper, unmountRecursive } from './idmap.js';
import { buildOciConfig } from './oci-spec.js';
import { mountRootfs, unmountRootfs, type RootfsLayout } from './overlay.js';
import { RuncRuntime } from './runc-runtime.js';

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const hostId = 3_000_000 + (process.pid % 500) * 65_536;
const idMapping = { hostId, size: 65_536 };
const name = `warren-test-deb-${process.pid}`;
const namespaces = { userNamespacePath: `/run/warren/userns/${name}`, networkNamespacePath: `/run/netns/${name}` };
const cgroupsPath = `/${name}`;

/** Unpacks the single-layer OCI image layout `<cacheDir>/<id>` into `target` (owners kept numerically). */
async function unpackTestImage(cacheDir: string, id: string, target: string): Promise<void> {
  const layout = join(cacheDir, id);
  const blob = (digest: string): string => join(layout, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await readFile(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> };
  await mkdir(target, { recursive: true });
  for (const layer of manifest.layers) await exec(['tar', '--numeric-owner', '-xpzf', blob(layer.digest), '-C', target]);
}

function collect(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin?.end();
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('a Debian image in a Warren container', () => {
  let dir = '';
  let layout: RootfsLayout | undefined;
  const runtime = new RuncRuntime({ stateRoot: '/run/warren/runc-test-debian' });
  const run = async (args: string[], options: { uid?: number; gid?: number } = {}) =>
    collect(await runtime.exec(name, { args, ...options }));

  beforeAll(async () => {
    const built = await exec(['scripts/test-images.sh', 'build'], { cwd: repoRoot });
    const cacheDir = built.stdout.trim().split('\n').at(-1)!;
    dir = await mkdtemp('/tmp/warren-debian-');
    await chmod(dir, 0o755);
    await unpackTestImage(cacheDir, 'base', join(dir, 'layer'));
    const helper = await ensureIdmapHelper(join(dir, 'bin'));
    layout = {
      lowerDirs: [join(dir, 'layer')],
      lowerMountDir: join(dir, 'lower'),
      upperDir: join(dir, 'upper'),
      workDir: join(dir, 'work'),
      target: join(dir, 'rootfs'),
      idMapping,
    };
    await mountRootfs(layout, helper);
    await createEnvironmentNamespaces(helper, idMapping, namespaces);
    const hosts = join(dir, 'hosts');
    await writeFile(hosts, '127.0.0.1 localhost debian-test\n');
    const bundle = join(dir, 'bundle');
    await mkdir(bundle);
    const config = buildOciConfig({
      rootfsPath: layout.target,
      hostname: 'debian-test',
      process: {
        args: ['sleep', 'infinity'],
        env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root'],
        cwd: '/',
        uid: 0,
        gid: 0,
      },
      idMapping,
      ...namespaces,
      cgroupsPath,
      mounts: [{ source: hosts, destination: '/etc/hosts', readonly: true }],
    });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
    await runtime.run(bundle, name);
  });

  afterAll(async () => {
    await runtime.delete(name, { force: true }).catch(() => undefined);
    if (layout) await unmountRootfs(layout, { detach: true });
    await deleteEnvironmentNamespaces(namespaces);
    if (dir) {
      await unmountRecursive(dir, { detach: true });
      await rm(dir, { recursive: true, force: true });
    }
    for (const stateDir of [runtime.stateRoot, `${runtime.stateRoot}-exec`]) await rm(stateDir, { recursive: true, force: true });
    for (const hierarchy of ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd', 'unified']) {
      await rm(`/sys/fs/cgroup/${hierarchy}${cgroupsPath}`, { recursive: false, force: true }).catch(() => undefined);
    }
  });

  it('adds a user with a home directory owned by its shifted uid on the host', async () => {
    const added = await run(['useradd', '--create-home', '--uid', '2000', '--shell', '/bin/bash', 'dev']);
    expect(added).toMatchObject({ code: 0 });
    const home = await stat(join(layout!.upperDir, 'home/dev'));
    expect([home.uid, home.gid]).toEqual([hostId + 2000, hostId + 2000]);
  });

  it('lets the new user become root with sudo', async () => {
    const sudoers = await run(['sh', '-c', "echo 'dev ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/dev && chmod 0440 /etc/sudoers.d/dev"]);
    expect(sudoers.code).toBe(0);
    const result = await run(['sudo', '-n', 'sh', '-c', 'id -u; id -G; touch /root/made-by-sudo'], { uid: 2000, gid: 2000 });
    expect(result.stderr).toBe('');
    expect(result.stdout.split('\n')[0]).toBe('0');
    expect(result.code).toBe(0);
    expect((await stat(join(layout!.upperDir, 'root/made-by-sudo'))).uid).toBe(hostId);
  });

  it('runs bash pipelines and process listing (fork via clone after clone3 returns ENOSYS)', async () => {
    const result = await run(['bash', '-c', 'echo $(( $(seq 1 5 | paste -sd+) )); ps -e -o comm= | sort']);
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')[0]).toBe('15');
    expect(result.stdout).toMatch(/sleep/);
  });

  it('stops and deletes', async () => {
    await runtime.stop(name, 0);
    expect(await runtime.state(name)).toBeUndefined();
  });
});
