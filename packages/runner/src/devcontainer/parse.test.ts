import { describe, expect, it } from 'vitest';
import { InvalidError } from '@warren/base';
import { parseDevcontainerConfig, parseImageMetadata } from './parse.js';

const SOURCE = '.devcontainer/devcontainer.json';

function parseError(text: string): InvalidError {
  try {
    parseDevcontainerConfig(text, SOURCE);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidError);
    expect((error as InvalidError).reason).toBe('InvalidDevcontainerConfig');
    return error as InvalidError;
  }
  throw new Error('expected parseDevcontainerConfig to throw');
}

describe('parseDevcontainerConfig', () => {
  it('accepts JSONC with comments and trailing commas', () => {
    const parsed = parseDevcontainerConfig(
      `\uFEFF// a comment
      {
        /* block */ "image": "mcr.microsoft.com/devcontainers/base:ubuntu",
        "containerEnv": { "A": "1", },
        "remoteEnv": { "PATH": "\${containerEnv:PATH}:/x", "UNSET": null },
        "forwardPorts": [3000, "db:5432",],
        "postCreateCommand": { "a": "npm ci", "b": ["make", "all"] },
        "customizations": { "vscode": { "extensions": ["x"] } },
      }`,
      SOURCE,
    );
    expect(parsed.config).toEqual({
      image: 'mcr.microsoft.com/devcontainers/base:ubuntu',
      containerEnv: { A: '1' },
      remoteEnv: { PATH: '${containerEnv:PATH}:/x', UNSET: null },
      forwardPorts: [3000, 'db:5432'],
      postCreateCommand: { a: 'npm ci', b: ['make', 'all'] },
    });
    expect(parsed.unsupported).toEqual([]);
    expect(parsed.warnings).toEqual([]);
    expect(parsed.source).toBe(SOURCE);
  });

  it('names file, line and column of a syntax error', () => {
    const error = parseError('{\n  "image": "x"\n  "name": "y"\n}');
    expect(error.message).toContain(`${SOURCE}:3:3`);
    expect(error.message).toMatch(/comma expected/);
  });

  it('rejects a top level that is not an object', () => {
    expect(parseError('[1, 2]').message).toMatch(/top level must be a JSON object/);
  });

  it('gives JSON path and line:column for wrong types, one cause per problem', () => {
    const error = parseError(`{
  "image": "x",
  "forwardPorts": [3000, "nope"],
  "containerEnv": { "A": 1 },
  "overrideCommand": "yes"
}`);
    expect(error.causes.map((cause) => cause.field)).toEqual(['forwardPorts[1]', 'containerEnv.A', 'overrideCommand']);
    expect(error.causes[0]?.message).toContain(`${SOURCE}:3:26: forwardPorts[1]:`);
    expect(error.causes[1]?.message).toContain(`${SOURCE}:4:26: containerEnv.A:`);
    expect(error.causes[2]?.message).toContain(`${SOURCE}:5:22: overrideCommand:`);
    expect(error.message).toMatch(/3 invalid properties/);
  });

  it('explains what a lifecycle command or port may be', () => {
    const error = parseError('{"forwardPorts": [true], "postCreateCommand": 5, "remoteEnv": {"A": 1}}');
    expect(error.causes.map((cause) => cause.message.replace(/^.*?: /, ''))).toEqual([
      'forwardPorts[0]: expected a port number or a "host:port" string',
      'postCreateCommand: expected a command string, an array of strings, or an object of named commands',
      'remoteEnv.A: expected a string, or null to unset the variable',
    ]);
  });

  it('rejects null values in containerEnv (only remoteEnv may unset)', () => {
    expect(parseError('{"containerEnv": {"A": null}}').causes[0]?.field).toBe('containerEnv.A');
  });

  it('collects unsupported properties instead of dropping them', () => {
    const parsed = parseDevcontainerConfig(
      JSON.stringify({
        image: 'x',
        dockerComposeFile: 'compose.yml',
        mounts: ['source=a,target=/b,type=volume'],
        runArgs: ['--cap-add=SYS_PTRACE', '--network', 'host'],
        privileged: true,
        init: false,
        capAdd: [],
        initializeCommand: 'echo hi',
      }),
      SOURCE,
    );
    expect(parsed.unsupported.map((entry) => entry.property)).toEqual([
      'dockerComposeFile',
      'mounts',
      'runArgs',
      'runArgs[1]',
      'privileged',
      'initializeCommand',
    ]);
    expect(parsed.unsupported.every((entry) => entry.source === SOURCE && entry.message.length > 0)).toBe(true);
    expect(parsed.unsupported.find((entry) => entry.property === 'initializeCommand')?.message).toMatch(/local machine/);
  });

  it('warns about unknown properties', () => {
    const parsed = parseDevcontainerConfig('{"image": "x", "imagee": "y"}', SOURCE);
    expect(parsed.warnings).toEqual([`${SOURCE}: unknown property "imagee" was ignored`]);
  });

  it('treats __proto__ as an ordinary unknown key', () => {
    const parsed = parseDevcontainerConfig('{"__proto__": {"image": "evil"}}', SOURCE);
    expect(parsed.config.image).toBeUndefined();
    expect(parsed.warnings).toHaveLength(1);
  });
});

describe('parseImageMetadata', () => {
  it('accepts an array or a single object', () => {
    expect(parseImageMetadata('[{"remoteUser":"vscode"},{"postCreateCommand":"x"}]').entries.map((entry) => entry.config)).toEqual([
      { remoteUser: 'vscode' },
      { postCreateCommand: 'x' },
    ]);
    const single = parseImageMetadata('{"containerUser":"dev"}');
    expect(single.entries[0]).toMatchObject({ source: 'image metadata[0]', config: { containerUser: 'dev' } });
  });

  it('never fails on bad metadata: drops what is invalid and warns', () => {
    expect(parseImageMetadata('not json').warnings[0]).toMatch(/not valid JSON/);
    expect(parseImageMetadata(undefined)).toEqual({ entries: [], warnings: [] });
    const result = parseImageMetadata('[{"remoteUser": 5, "containerEnv": {"A": "1"}, "mounts": ["x"]}, 3]');
    expect(result.warnings).toEqual(['image metadata[1] is not an object and was ignored']);
    expect(result.entries[0]?.config).toEqual({ containerEnv: { A: '1' } });
    expect(result.entries[0]?.warnings[0]).toMatch(/remoteUser.*ignored/);
    expect(result.entries[0]?.unsupported[0]).toMatchObject({ property: 'mounts', source: 'image metadata[0]' });
  });
});
