// Unit tests of the build inputs: config reading, cache keys, .dockerignore and Dockerfile FROM parsing.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { computeCacheKey, dockerfileBaseImages, dockerignoreMatcher, readBuildPlan } from './build-inputs.js';

describe('dockerfileBaseImages', () => {
  it('lists FROM images without stage names and scratch, expanding global ARGs', () => {
    const dockerfile = [
      '# syntax=docker/dockerfile:1',
      'ARG VARIANT=bookworm',
      'ARG REGISTRY',
      'FROM --platform=linux/amd64 mcr.microsoft.com/devcontainers/base:${VARIANT} AS base',
      'RUN echo hi \\',
      '  && echo there',
      'FROM base AS second',
      'FROM ${REGISTRY:-docker.io}/library/golang:1.22 as go',
      'from scratch',
      'FROM second',
      'COPY --from=go /x /y',
    ].join('\n');
    expect(dockerfileBaseImages(dockerfile)).toEqual(['mcr.microsoft.com/devcontainers/base:bookworm', 'docker.io/library/golang:1.22']);
    expect(dockerfileBaseImages(dockerfile, { VARIANT: 'bullseye', REGISTRY: '127.0.0.1:5000' })).toEqual([
      'mcr.microsoft.com/devcontainers/base:bullseye',
      '127.0.0.1:5000/library/golang:1.22',
    ]);
  });

  it('joins continued FROM lines', () => {
    expect(dockerfileBaseImages('FROM \\\n  ubuntu:22.04\nRUN true\n')).toEqual(['ubuntu:22.04']);
  });
});

describe('dockerignoreMatcher', () => {
  it('follows Docker rules: globs, ** , directories and ! exceptions', () => {
    const ignored = dockerignoreMatcher(
      ['# comment', 'node_modules', '*.log', '**/*.tmp', 'docs/', '!docs/keep.md', './build/*'].join('\n'),
    );
    expect(ignored('node_modules')).toBe(true);
    expect(ignored('node_modules/a/b.js')).toBe(true);
    expect(ignored('a.log')).toBe(true);
    expect(ignored('sub/a.log')).toBe(false); // * does not cross directories
    expect(ignored('deep/er/x.tmp')).toBe(true);
    expect(ignored('docs/a.md')).toBe(true);
    expect(ignored('docs/keep.md')).toBe(false);
    expect(ignored('build/out')).toBe(true);
    expect(ignored('src/main.ts')).toBe(false);
  });
});

describe('readBuildPlan and computeCacheKey', () => {
  let workspace: string;
  const devcontainer = (): string => join(workspace, '.devcontainer');
  const config = (): string => join(devcontainer(), 'devcontainer.json');

  beforeEach(async () => {
    workspace = await mkdtemp(join(tmpdir(), 'warren-build-inputs-'));
    await mkdir(join(devcontainer(), 'local-feature'), { recursive: true });
    await writeFile(
      config(),
      '// JSONC\n{"build": {"dockerfile": "Dockerfile", "context": "..", "args": {"V": "1"}}, "features": {"./local-feature": {}, "ghcr.io/x/y:1": {},},}\n',
    );
    await writeFile(join(devcontainer(), 'Dockerfile'), 'FROM debian:bookworm\n');
    await writeFile(join(devcontainer(), 'local-feature', 'install.sh'), 'echo hi\n');
    await writeFile(join(workspace, 'app.txt'), 'one\n');
    await mkdir(join(workspace, '.git'));
    await writeFile(join(workspace, '.git', 'index'), 'a');
  });
  afterEach(async () => {
    await rm(workspace, { recursive: true, force: true });
  });

  it('resolves the Dockerfile, context, args and local features relative to the config', async () => {
    const plan = await readBuildPlan(config());
    expect(plan.dockerfilePath).toBe(join(devcontainer(), 'Dockerfile'));
    expect(plan.contextDir).toBe(workspace);
    expect(plan.buildArgs).toEqual({ V: '1' });
    expect(plan.localFeatureDirs).toEqual([join(devcontainer(), 'local-feature')]);
    expect(plan.image).toBeUndefined();
  });

  it('changes the key for each input and ignores .git, mtimes and .dockerignore-d files', async () => {
    const key = async (): Promise<string> => computeCacheKey(await readBuildPlan(config()), 'cli@1');
    const first = await key();
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(await key()).toBe(first);
    await writeFile(join(workspace, '.git', 'index'), 'changed');
    await writeFile(join(workspace, 'app.txt'), 'one\n'); // same content, new mtime
    expect(await key()).toBe(first);
    expect(await computeCacheKey(await readBuildPlan(config()), 'cli@2')).not.toBe(first);

    const seen = new Set([first]);
    const expectNew = async (): Promise<void> => {
      const next = await key();
      expect(seen.has(next)).toBe(false);
      seen.add(next);
    };
    await writeFile(join(workspace, 'app.txt'), 'two\n');
    await expectNew();
    await chmod(join(workspace, 'app.txt'), 0o755);
    await expectNew();
    await writeFile(join(devcontainer(), 'Dockerfile'), 'FROM debian:trixie\n');
    await expectNew();
    await writeFile(join(devcontainer(), 'local-feature', 'install.sh'), 'echo changed\n');
    await expectNew();
    await writeFile(join(workspace, '.dockerignore'), 'ignored.txt\n');
    await expectNew(); // the ignore file itself is context
    const withIgnore = await key();
    await writeFile(join(workspace, 'ignored.txt'), 'x');
    expect(await key()).toBe(withIgnore);
  });

  it('rejects configs that do not parse or have nothing to build', async () => {
    await writeFile(config(), '{"image": "debian"\n  "x": 1}');
    const error = await readBuildPlan(config()).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ reason: 'InvalidDevcontainerConfig' });
    expect((error as Error).message).toMatch(/devcontainer\.json:2:3: /);
    await writeFile(config(), '{"image": "debian"}');
    await expect(readBuildPlan(config())).rejects.toThrow(/nothing to build/);
    await writeFile(config(), '{"image": "debian", "features": {"./local-feature": {}}}');
    const plan = await readBuildPlan(config());
    expect(plan.image).toBe('debian');
    expect(plan.dockerfilePath).toBeUndefined();
    await writeFile(config(), '{"image": "debian", "features": {"./missing": {}}}');
    await expect(computeCacheKey(await readBuildPlan(config()), 'cli')).rejects.toThrow(/local feature folder .*missing not found/);
  });
});
