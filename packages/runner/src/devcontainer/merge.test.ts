import { describe, expect, it } from 'vitest';
import { InvalidError } from '@warren/base';
import { type ResolveDevcontainerInput, resolveDevcontainer, resolveRemoteEnv } from './merge.js';
import { parseDevcontainerConfig } from './parse.js';
import { devcontainerId } from './variables.js';

const SOURCE = '.devcontainer/devcontainer.json';
const base: Omit<ResolveDevcontainerInput, 'config'> = {
  defaultImage: 'mcr.microsoft.com/devcontainers/base:ubuntu',
  repositoryDir: '/data/environments/e1/workspace/repo',
  repositoryName: 'repo',
  environmentId: 'e1',
};

function config(value: unknown) {
  return parseDevcontainerConfig(JSON.stringify(value), SOURCE);
}

describe('resolveDevcontainer', () => {
  it('fills every default for a repository without devcontainer.json', () => {
    const resolved = resolveDevcontainer(base);
    expect(resolved).toEqual({
      image: base.defaultImage,
      containerEnv: {},
      remoteEnv: {},
      containerUser: 'root',
      remoteUser: 'root',
      workspaceFolder: '/workspaces/repo',
      forwardPorts: [],
      portsAttributes: {},
      overrideCommand: true,
      lifecycle: { onCreate: [], updateContent: [], postCreate: [], postStart: [], postAttach: [] },
      waitFor: 'updateContentCommand',
      userEnvProbe: 'loginInteractiveShell',
      updateRemoteUserUID: true,
      shutdownAction: 'stopContainer',
      devcontainerId: devcontainerId('e1'),
      runtime: { capAdd: [], securityOpt: [], init: false, privileged: false },
      unsupported: [],
      warnings: [],
    });
  });

  it('merges image metadata first and the config last, per the spec merge logic', () => {
    const metadataLabel = JSON.stringify([
      {
        id: 'ghcr.io/devcontainers/features/common-utils:2',
        remoteUser: 'vscode',
        containerEnv: { A: 'meta', B: 'meta' },
        remoteEnv: { R: 'meta' },
        forwardPorts: [3000, 4000],
        portsAttributes: { '3000': { label: 'meta' }, '4000': { label: 'four' } },
        postCreateCommand: 'echo meta',
        capAdd: ['SYS_PTRACE'],
        securityOpt: ['seccomp=unconfined'],
        init: true,
        hostRequirements: { cpus: 4, memory: '8gb' },
      },
      { capAdd: ['SYS_PTRACE', 'NET_ADMIN'], postStartCommand: ['/usr/local/bin/start.sh'], privileged: false },
    ]);
    const resolved = resolveDevcontainer({
      ...base,
      config: config({
        image: 'img',
        containerUser: 'dev',
        containerEnv: { B: 'config', C: 'config' },
        remoteEnv: { R: null },
        forwardPorts: [4000, 'localhost:5000', 'db:5432'],
        portsAttributes: { '3000': { label: 'config' } },
        postCreateCommand: { install: 'npm ci', build: ['make', 'all'] },
        postStartCommand: '',
        hostRequirements: { cpus: 2, memory: '16gb', storage: '32gb' },
        waitFor: 'postCreateCommand',
        overrideCommand: false,
      }),
      image: { metadataLabel, user: 'imageuser' },
    });
    expect(resolved.image).toBe('img');
    expect(resolved.containerUser).toBe('dev');
    expect(resolved.remoteUser).toBe('vscode');
    expect(resolved.containerEnv).toEqual({ A: 'meta', B: 'config', C: 'config' });
    expect(resolved.remoteEnv).toEqual({ R: null });
    expect(resolved.forwardPorts).toEqual([3000, 4000, 5000]);
    expect(resolved.portsAttributes).toEqual({ '3000': { label: 'config' }, '4000': { label: 'four' } });
    expect(resolved.overrideCommand).toBe(false);
    expect(resolved.waitFor).toBe('postCreateCommand');
    expect(resolved.lifecycle.postCreate).toEqual([
      { source: 'image metadata[0]', parallel: false, commands: [{ kind: 'shell', shell: 'echo meta' }] },
      {
        source: SOURCE,
        parallel: true,
        commands: [
          { kind: 'shell', name: 'install', shell: 'npm ci' },
          { kind: 'exec', name: 'build', argv: ['make', 'all'] },
        ],
      },
    ]);
    expect(resolved.lifecycle.postStart).toEqual([
      { source: 'image metadata[1]', parallel: false, commands: [{ kind: 'exec', argv: ['/usr/local/bin/start.sh'] }] },
    ]);
    expect(resolved.runtime).toEqual({
      capAdd: ['SYS_PTRACE', 'NET_ADMIN'],
      securityOpt: ['seccomp=unconfined'],
      init: true,
      privileged: false,
    });
    expect(resolved.hostRequirements).toEqual({ cpus: 4, memoryBytes: 16 * 1024 ** 3, storageBytes: 32 * 1024 ** 3 });
    expect(resolved.unsupported.map((entry) => `${entry.source}:${entry.property}`)).toEqual([
      'image metadata[0]:capAdd',
      'image metadata[0]:securityOpt',
      'image metadata[0]:init',
      'image metadata[1]:capAdd',
      `${SOURCE}:forwardPorts[2]`,
    ]);
  });

  it('defaults remoteUser to the image user, and containerUser too', () => {
    const resolved = resolveDevcontainer({ ...base, config: config({ image: 'img' }), image: { user: 'node' } });
    expect(resolved).toMatchObject({ containerUser: 'node', remoteUser: 'node', configFile: SOURCE });
  });

  it('substitutes variables, resolving workspaceFolder first', () => {
    const resolved = resolveDevcontainer({
      ...base,
      localEnv: { TOKEN_NAME: 'x' },
      config: config({
        image: 'img',
        workspaceFolder: '/src/${localWorkspaceFolderBasename}/',
        containerEnv: { WS: '${containerWorkspaceFolder}', ID: '${devcontainerId}', L: '${localEnv:TOKEN_NAME}' },
        remoteEnv: { PATH: '${containerEnv:PATH}:${containerWorkspaceFolder}/bin' },
        postCreateCommand: 'cd ${containerWorkspaceFolderBasename}',
      }),
    });
    expect(resolved.workspaceFolder).toBe('/src/repo');
    expect(resolved.containerEnv).toEqual({ WS: '/src/repo', ID: devcontainerId('e1'), L: 'x' });
    expect(resolved.remoteEnv).toEqual({ PATH: '${containerEnv:PATH}:/src/repo/bin' });
    expect(resolved.lifecycle.postCreate[0]?.commands[0]).toEqual({ kind: 'shell', shell: 'cd repo' });
    expect(resolveRemoteEnv(resolved.remoteEnv, { PATH: '/usr/bin' })).toEqual({ PATH: '/usr/bin:/src/repo/bin' });
  });

  it('describes the build for Dockerfile configs and features, relative to the config file', () => {
    const dockerfile = resolveDevcontainer({
      ...base,
      config: config({ build: { dockerfile: 'Dockerfile', context: '..', args: { V: '1' }, target: 'dev' } }),
    });
    expect(dockerfile.image).toBeUndefined();
    expect(dockerfile.build).toEqual({
      configFile: SOURCE,
      dockerfile: '.devcontainer/Dockerfile',
      context: '.',
      args: { V: '1' },
      target: 'dev',
      features: {},
    });
    const legacy = resolveDevcontainer({ ...base, config: config({ dockerFile: 'Dockerfile' }), image: { reference: 'built@sha256:1' } });
    expect(legacy.image).toBe('built@sha256:1');
    expect(legacy.build?.context).toBe('.devcontainer');
    const features = resolveDevcontainer({ ...base, config: config({ image: 'img', features: { 'ghcr.io/x/y:1': {} } }) });
    expect(features.build).toEqual({ configFile: SOURCE, image: 'img', args: {}, features: { 'ghcr.io/x/y:1': {} } });
  });

  it('drops the config entry a devcontainer build already put into the label', () => {
    const resolved = resolveDevcontainer({
      ...base,
      config: config({ image: 'img', postCreateCommand: 'once' }),
      image: {
        metadataLabel: JSON.stringify([{ onCreateCommand: 'feature' }, { postCreateCommand: 'once' }]),
        metadataIncludesConfig: true,
      },
    });
    expect(resolved.lifecycle.postCreate).toHaveLength(1);
    expect(resolved.lifecycle.onCreate).toHaveLength(1);
  });

  it.each([
    [{ dockerComposeFile: 'c.yml', service: 'app' }, /Docker Compose configurations are not supported/],
    [{ name: 'nothing' }, /neither "image" nor "build.dockerfile"/],
    [{ build: { dockerfile: '../../Dockerfile' } }, /points outside the repository/],
    [{ image: 'img', workspaceFolder: 'relative' }, /must be an absolute path/],
  ])('rejects %j', (value, message) => {
    expect(() => resolveDevcontainer({ ...base, config: config(value) })).toThrow(InvalidError);
    expect(() => resolveDevcontainer({ ...base, config: config(value) })).toThrow(message);
  });
});
