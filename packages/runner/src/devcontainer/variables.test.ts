import { describe, expect, it } from 'vitest';
import { allowedVariables, devcontainerId, substituteConfig, substituteVariables, type VariableContext } from './variables.js';

const context: VariableContext = {
  localEnv: { USER_NAME: 'ada', EMPTY: '' },
  localWorkspaceFolder: '/var/lib/warren/environments/e1/workspace/my-repo',
  containerWorkspaceFolder: '/workspaces/my-repo/',
  devcontainerId: 'abc123',
};

describe('substituteVariables', () => {
  it('substitutes every variable kind and walks objects and arrays', () => {
    const input = {
      a: '${localEnv:USER_NAME}-${env:USER_NAME}',
      b: ['${localWorkspaceFolder}', '${localWorkspaceFolderBasename}', { c: '${containerWorkspaceFolder}' }],
      d: '${containerWorkspaceFolderBasename}',
      n: 3,
      t: true,
      z: null,
    };
    expect(substituteVariables(input, context)).toEqual({
      a: 'ada-ada',
      b: ['/var/lib/warren/environments/e1/workspace/my-repo', 'my-repo', { c: '/workspaces/my-repo/' }],
      d: 'my-repo',
      n: 3,
      t: true,
      z: null,
    });
    expect(input.a).toBe('${localEnv:USER_NAME}-${env:USER_NAME}');
  });

  it('uses defaults (which may contain colons) and empty strings for missing localEnv names', () => {
    expect(substituteVariables('${localEnv:NOPE:http://x:1}|${localEnv:NOPE}|${localEnv:EMPTY:d}', context)).toBe('http://x:1||');
  });

  it('leaves unknown names, not-yet-known values and substituted text alone', () => {
    expect(substituteVariables('echo ${HOME} ${containerEnv:PATH}', context, allowedVariables('remoteEnv'))).toBe(
      'echo ${HOME} ${containerEnv:PATH}',
    );
    const nested = substituteVariables('${localEnv:X}', { ...context, localEnv: { X: '${localEnv:USER_NAME}' } });
    expect(nested).toBe('${localEnv:USER_NAME}');
    const unknownFolder = substituteVariables('${containerWorkspaceFolder}', { localEnv: {}, localWorkspaceFolder: '/w' });
    expect(unknownFolder).toBe('${containerWorkspaceFolder}');
  });

  it('resolves containerEnv once the container environment is known', () => {
    const later = { ...context, containerEnv: { PATH: '/usr/bin' } };
    expect(substituteVariables('${containerEnv:PATH}:/x ${containerEnv:NOPE:d}', later, allowedVariables('remoteEnv'))).toBe(
      '/usr/bin:/x d',
    );
  });

  it('reports variables the spec does not allow in a property and leaves them', () => {
    const seen: string[] = [];
    const later = { ...context, containerEnv: { PATH: '/usr/bin' } };
    expect(substituteVariables('${containerEnv:PATH}', later, allowedVariables('containerEnv'), (v) => seen.push(v))).toBe(
      '${containerEnv:PATH}',
    );
    expect(substituteVariables('${devcontainerId}', later, allowedVariables('image'), (v) => seen.push(v))).toBe('${devcontainerId}');
    expect(seen).toEqual(['${containerEnv:PATH}', '${devcontainerId}']);
  });
});

describe('allowedVariables', () => {
  it('follows the spec table', () => {
    expect(allowedVariables('remoteEnv').has('containerEnv')).toBe(true);
    expect(allowedVariables('containerEnv').has('containerEnv')).toBe(false);
    expect(allowedVariables('containerEnv').has('devcontainerId')).toBe(true);
    expect(allowedVariables('postCreateCommand').has('devcontainerId')).toBe(true);
    expect(allowedVariables('build').has('devcontainerId')).toBe(false);
    expect(allowedVariables('image').has('localEnv')).toBe(true);
  });
});

describe('substituteConfig', () => {
  it('applies per-property rules and warns about disallowed uses', () => {
    const { config, warnings } = substituteConfig(
      {
        image: 'img:${localEnv:USER_NAME}',
        containerEnv: { ID: '${devcontainerId}', P: '${containerEnv:PATH}' },
        remoteEnv: { P: '${containerEnv:PATH}:/bin', U: null },
      },
      context,
      'devcontainer.json',
    );
    expect(config).toEqual({
      image: 'img:ada',
      containerEnv: { ID: 'abc123', P: '${containerEnv:PATH}' },
      remoteEnv: { P: '${containerEnv:PATH}:/bin', U: null },
    });
    expect(warnings).toEqual(['devcontainer.json: ${containerEnv:PATH} cannot be used in "containerEnv" and was left as written']);
  });
});

describe('devcontainerId', () => {
  it('is stable, 52 base-32 characters, and differs per environment', () => {
    const id = devcontainerId('env-1');
    expect(id).toMatch(/^[0-9a-v]{52}$/);
    expect(devcontainerId('env-1')).toBe(id);
    expect(devcontainerId('env-2')).not.toBe(id);
    // pinned so an accidental change of the derivation (which would change users' volumes/paths) fails
    expect(id).toBe('014q4s20g3cj3s7deren5rmgf8frmack5i1pi4up90hv69nvmppe');
  });
});
