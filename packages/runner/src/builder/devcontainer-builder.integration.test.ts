// The builder backend with real tools: a managed dockerd (Debian docker.io), the reference devcontainer CLI,
// a local docker-registry standing in for mcr.microsoft.com through a mirror, and the image store importing
// the result. Needs root, dockerd, docker-registry and the cached test images (scripts/test-images.sh).
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@warren/base';
import { type TestImages, ensureTestImages } from '../../../../e2e/fixtures/images.js';
import { type TestRegistry, startRegistry } from '../../../../e2e/fixtures/registry.js';
import { ImageStore } from '../image/index.js';
import { exec } from '../linux/index.js';
import { DevcontainerBuilder } from './devcontainer-builder.js';
import { DockerEngine, findExecutable } from './docker-engine.js';
import { BaseImageNotFoundError, DevcontainerBuildError } from './errors.js';
import { referenceUpAndExec } from './reference-cli.js';

const missingTools = (
  await Promise.all(['dockerd', 'docker', 'docker-registry'].map(async (tool) => ((await findExecutable(tool)) ? undefined : tool)))
).filter(Boolean);
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root'
    : missingTools.length > 0
      ? `needs ${missingTools.join(', ')} (apt-get install docker.io docker-registry)`
      : undefined;
if (skipReason) console.warn(`skipping builder integration tests: ${skipReason}`);

const BASE = 'mcr.microsoft.com/devcontainers/base:bookworm';

describe.skipIf(skipReason !== undefined)('DevcontainerBuilder on a managed Docker engine', () => {
  let registry: TestRegistry | undefined;
  let images: TestImages;
  let dataDir: string;
  let workspace: string;
  let engine: DockerEngine;
  let builder: DevcontainerBuilder;
  let linksBefore: string[];
  let mirrors: Record<string, string[]>;
  const devcontainerDir = (): string => join(workspace, '.devcontainer');
  const setDockerfile = (text: string): Promise<void> => writeFile(join(devcontainerDir(), 'Dockerfile'), text);

  beforeAll(async () => {
    linksBefore = await linkNames();
    registry = await startRegistry();
    images = await ensureTestImages(registry);
    mirrors = { 'mcr.microsoft.com': [registry.url] };
    // Short path: dockerd's sockets must fit in sun_path (108 bytes).
    dataDir = await mkdtemp('/tmp/wbt-');
    workspace = await mkdtemp('/tmp/wbt-ws-');
    await mkdir(join(devcontainerDir(), 'local-feature'), { recursive: true });
    await writeFile(
      join(devcontainerDir(), 'devcontainer.json'),
      '// a Dockerfile build with a local feature\n{"build": {"dockerfile": "Dockerfile"}, "features": {"./local-feature": {}}}\n',
    );
    await setDockerfile(`FROM ${BASE}\nRUN echo built > /built.txt\n`);
    await writeFile(
      join(devcontainerDir(), 'local-feature', 'devcontainer-feature.json'),
      JSON.stringify({ id: 'local-feature', version: '1.0.0', name: 'Local feature' }),
    );
    await writeFile(
      join(devcontainerDir(), 'local-feature', 'install.sh'),
      '#!/bin/sh\nset -e\necho "feature installed" > /feature.txt\n',
      { mode: 0o755 },
    );
    engine = new DockerEngine({ dataDir });
    builder = new DevcontainerBuilder({ engine });
  });

  afterAll(async () => {
    await engine?.stop({ removeData: true });
    await registry?.stop();
    if (workspace) await rm(workspace, { recursive: true, force: true });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  let firstKey: string;

  it('builds a Dockerfile with a local feature from a mirrored base image into an importable archive', async () => {
    const lines: string[] = [];
    const result = await builder.build({
      workspaceDir: workspace,
      configPath: '.devcontainer/devcontainer.json',
      registryMirrors: mirrors,
      onLog: (line) => lines.push(line),
    });
    expect(result.cached).toBe(false);
    expect(result.cacheKey).toMatch(/^[0-9a-f]{64}$/);
    expect(result.dockerArchivePath).toBe(join(dataDir, 'builder', 'archives', `${result.cacheKey}.tar`));
    expect(lines.some((line) => line.includes(`pulling base image ${BASE} from ${registry!.url}/devcontainers/base:bookworm`))).toBe(true);
    expect(lines.some((line) => line.includes('Feature       : Local feature'))).toBe(true);
    // The CLI must not write a lockfile into the user's workspace.
    expect(await readdir(devcontainerDir())).not.toContain('devcontainer-lock.json');
    firstKey = result.cacheKey;

    // Hand-off: the image store imports the archive; its layers hold both files.
    const store = new ImageStore(join(dataDir, 'images'), {}, silentLogger);
    const image = await store.importDockerArchive(result.dockerArchivePath, result.imageName);
    expect(await readFromLayers(image.layers, 'built.txt')).toBe('built\n');
    expect(await readFromLayers(image.layers, 'feature.txt')).toBe('feature installed\n');
    expect(image.config.labels['devcontainer.metadata']).toContain('./local-feature');

    // And the same image runs on the managed engine.
    const run = await engine.docker(['run', '--rm', result.imageName, 'cat', '/built.txt', '/feature.txt']);
    expect(run.stdout).toBe('built\nfeature installed\n');
  });

  it('reuses the archive when the inputs are unchanged', async () => {
    const lines: string[] = [];
    const result = await builder.build({
      workspaceDir: workspace,
      configPath: join(devcontainerDir(), 'devcontainer.json'),
      registryMirrors: mirrors,
      onLog: (line) => lines.push(line),
    });
    expect(result).toMatchObject({ cached: true, cacheKey: firstKey });
    expect(lines).toEqual([`[warren] build cache hit: ${firstKey}`]);
  });

  it('rebuilds when the Dockerfile changes; RUN steps reach the host network', async () => {
    // The registry listens on the host's 127.0.0.1 only: reachable from a RUN step with host networking.
    await setDockerfile(`FROM ${BASE}\nRUN curl -fsS http://${registry!.url}/v2/ && echo built again > /built.txt\n`);
    const result = await builder.build({
      workspaceDir: workspace,
      configPath: '.devcontainer/devcontainer.json',
      registryMirrors: mirrors,
    });
    expect(result.cached).toBe(false);
    expect(result.cacheKey).not.toBe(firstKey);
    expect((await stat(result.dockerArchivePath)).isFile()).toBe(true);
    const run = await engine.docker(['run', '--rm', result.imageName, 'cat', '/built.txt']);
    expect(run.stdout).toBe('built again\n');
  });

  it('reports a failing RUN step with the tail of the build log', async () => {
    // "Connection refused" in a RUN step's output must not read as an unreachable base image.
    await setDockerfile(`FROM ${BASE}\nRUN echo marker-before-failure && curl -sS http://127.0.0.1:9/; exit 7\n`);
    const error = await builder
      .build({ workspaceDir: workspace, configPath: '.devcontainer/devcontainer.json', registryMirrors: mirrors })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DevcontainerBuildError);
    expect((error as DevcontainerBuildError).reason).toBe('DevcontainerBuildFailed');
    expect((error as Error).message).toContain('build log tail');
    expect((error as DevcontainerBuildError).logTail).toContain('marker-before-failure');
    // The failed step's container is not left behind.
    expect((await engine.docker(['ps', '--all', '--quiet'])).stdout.trim()).toBe('');
  });

  it('reports a Dockerfile syntax error with the log tail', async () => {
    await setDockerfile(`FROM ${BASE}\nRUNN echo typo\n`);
    const error = await builder
      .build({ workspaceDir: workspace, configPath: '.devcontainer/devcontainer.json', registryMirrors: mirrors })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DevcontainerBuildError);
    expect((error as Error).message).toMatch(/unknown instruction: RUNN/i);
  });

  it('reports an unknown base image, whether mirrored or not', async () => {
    // Mirrored: the mirror lacks it and the "origin" (a closed loopback port) is unreachable.
    await setDockerfile('FROM 127.0.0.1:9/devcontainers/missing:1\n');
    const mirrored = await builder
      .build({
        workspaceDir: workspace,
        configPath: '.devcontainer/devcontainer.json',
        registryMirrors: { '127.0.0.1:9': [registry!.url] },
      })
      .catch((caught: unknown) => caught);
    expect(mirrored).toBeInstanceOf(BaseImageNotFoundError);
    expect((mirrored as BaseImageNotFoundError).attempts).toHaveLength(2);
    expect((mirrored as Error).message).toContain(`${registry!.url}/devcontainers/missing:1`);

    // Not mirrored: the build's own pull fails.
    await setDockerfile(`FROM ${registry!.url}/devcontainers/missing:2\n`);
    const direct = await builder
      .build({ workspaceDir: workspace, configPath: '.devcontainer/devcontainer.json' })
      .catch((caught: unknown) => caught);
    expect(direct).toBeInstanceOf(BaseImageNotFoundError);
    expect((direct as BaseImageNotFoundError).image).toBe(`${registry!.url}/devcontainers/missing:2`);
  });

  it('builds an image-plus-features config once for concurrent requests', async () => {
    const config = join(devcontainerDir(), 'image-features.json');
    await writeFile(config, JSON.stringify({ image: BASE, features: { './local-feature': {} } }));
    const request = { workspaceDir: workspace, configPath: config, registryMirrors: mirrors };
    const [first, second] = await Promise.all([builder.build(request), builder.build(request)]);
    expect(first).toEqual(second); // one shared run
    expect(first.cached).toBe(false);
    const run = await engine.docker(['run', '--rm', first.imageName, 'cat', '/feature.txt']);
    expect(run.stdout).toBe('feature installed\n');
    expect((await builder.build(request)).cached).toBe(true);
  });

  it('cancels a running build when its signal aborts', async () => {
    const marker = `cancel-me-${process.pid}`; // unique, so a parallel run of this file is not mistaken for ours
    await setDockerfile(`FROM ${BASE}\nRUN echo ${marker} && sleep 300\n`);
    const controller = new AbortController();
    const reason = new Error('cancelled by test');
    const building = builder.build({
      workspaceDir: workspace,
      configPath: '.devcontainer/devcontainer.json',
      registryMirrors: mirrors,
      signal: controller.signal,
      onLog: (line) => {
        if (line.includes(marker) && !line.includes('RUN')) controller.abort(reason);
      },
    });
    await expect(building).rejects.toBe(reason);
    // The daemon notices the client went away and removes the step's container.
    await waitUntil(async () => (await engine.docker(['ps', '--all', '--quiet'])).stdout.trim() === '');
    expect(await processesMentioning(marker)).toEqual([]);
  });

  it('times the reference devcontainer up + exec for an image-based config (benchmark baseline)', async () => {
    const imageWorkspace = await mkdtemp('/tmp/wbt-up-');
    try {
      await engine.docker(['pull', '--quiet', images.base]);
      await mkdir(join(imageWorkspace, '.devcontainer'));
      await writeFile(join(imageWorkspace, '.devcontainer', 'devcontainer.json'), JSON.stringify({ image: images.base }));
      const runs: { upMs: number; execMs: number }[] = [];
      for (let index = 0; index < 3; index++) {
        const result = await referenceUpAndExec({ workspaceDir: imageWorkspace, engine });
        expect(result.containerId).toMatch(/^[0-9a-f]{64}$/);
        runs.push(result);
      }
      // The containers were removed again.
      expect(
        (await engine.docker(['ps', '--all', '--quiet', '--filter', `label=devcontainer.local_folder=${imageWorkspace}`])).stdout.trim(),
      ).toBe('');
      const median = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
      console.log(
        `reference devcontainer up + exec true on the managed engine: up ${runs.map((run) => Math.round(run.upMs)).join('/')} ms (median ${Math.round(median(runs.map((run) => run.upMs)))}), ` +
          `exec ${runs.map((run) => Math.round(run.execMs)).join('/')} ms (median ${Math.round(median(runs.map((run) => run.execMs)))})`,
      );
    } finally {
      await rm(imageWorkspace, { recursive: true, force: true });
    }
  });

  it('adopts a running engine from another instance and stops without leftovers', async () => {
    const pid = await engine.runningPid();
    expect(pid).toBeGreaterThan(0);
    const second = new DockerEngine({ dataDir });
    await second.ensureRunning();
    expect(await second.runningPid()).toBe(pid);
    await second.ensureRunning(); // idempotent

    await second.stop();
    expect(await engine.isRunning()).toBe(false);
    expect(await processesMentioning(dataDir)).toEqual([]);
    expect((await readFile('/proc/self/mountinfo', 'utf8')).includes(dataDir)).toBe(false);
    // Other tests may add links meanwhile; the engine must have added no bridge of its own.
    expect((await linkNames()).filter((name) => /^(docker|br-)/.test(name) && !linksBefore.includes(name))).toEqual([]);
    expect(await exists(engine.socketPath)).toBe(false);
    expect(await exists(engine.execRoot)).toBe(false);
    // The data root (images, build cache) and archives survive a stop, so a restart rebuilds nothing.
    expect(await exists(join(dataDir, 'builder', 'archives', `${firstKey}.tar`))).toBe(true);

    // A fresh start after the stop works and sees the kept images.
    await engine.ensureRunning();
    expect((await engine.docker(['image', 'inspect', BASE])).code).toBe(0);
  });

  it('recovers from a SIGKILLed dockerd: the next start and stop remove its containerd, shims and containers', async () => {
    await engine.ensureRunning();
    await engine.docker(['pull', '--quiet', images.busybox]);
    const id = (await engine.docker(['run', '--detach', images.busybox, 'sleep', '1000'])).stdout.trim();
    const containerPid = Number((await engine.docker(['inspect', '--format', '{{.State.Pid}}', id])).stdout.trim());
    expect(containerPid).toBeGreaterThan(0);
    expect(await readFile(`/proc/${containerPid}/cgroup`, 'utf8')).toContain(`/${engine.namespace}/${id}`);
    const dockerdPid = (await engine.runningPid())!;
    process.kill(dockerdPid, 'SIGKILL');
    await waitUntil(async () => !(await engine.isRunning()));
    expect(await processesMentioning(dataDir)).not.toEqual([]); // containerd and the shim outlive dockerd

    const restarted = new DockerEngine({ dataDir });
    await restarted.ensureRunning();
    expect(await restarted.runningPid()).not.toBe(dockerdPid);
    expect(await processGone(containerPid)).toBe(true);
    expect((await restarted.docker(['run', '--rm', images.busybox, 'echo', 'ok'])).stdout).toBe('ok\n');

    process.kill((await restarted.runningPid())!, 'SIGKILL');
    await restarted.stop();
    expect(await processesMentioning(dataDir)).toEqual([]);
    expect((await readFile('/proc/self/mountinfo', 'utf8')).includes(dataDir)).toBe(false);
    expect(await exists(`/sys/fs/cgroup/pids/${engine.namespace}`)).toBe(false);
  });
});

/** Reads `path` from the topmost unpacked layer that has it (layers are top first). */
async function readFromLayers(layers: readonly string[], path: string): Promise<string | undefined> {
  for (const layer of layers) {
    const text = await readFile(join(layer, path), 'utf8').catch(() => undefined);
    if (text !== undefined) return text;
  }
  return undefined;
}

/** Polls `condition` every 50 ms, at most 200 times; a bound on waiting, not an assertion on time. */
async function waitUntil(condition: () => Promise<boolean>): Promise<void> {
  for (let index = 0; index < 200; index++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('condition not reached');
}

async function linkNames(): Promise<string[]> {
  const { stdout } = await exec(['ip', '-o', 'link', 'show']);
  return stdout
    .split('\n')
    .map((line) => line.split(':')[1]?.trim().split('@')[0])
    .filter((name): name is string => !!name)
    .sort();
}

async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) found.push(`${entry}: ${cmdline.replaceAll('\0', ' ')}`);
  }
  return found;
}

/** True when `pid` has exited: no /proc entry, or a zombie that this sandbox's init has not reaped yet. */
async function processGone(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
