import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidError } from '@warren/base';
import { describe, expect, it } from 'vitest';
import {
  AgentConnectionKind,
  ExecAgentBuildError,
  type AgentExecRequest,
  connectionHeader,
  decodeExecRequest,
  encodeExecRequest,
  execAgentSourcePath,
  initArgs,
} from './exec-agent.js';

const REQUEST: AgentExecRequest = {
  uid: 1000,
  gid: 1001,
  additionalGids: [27, 100],
  cwd: '/workspaces/app',
  argv: ['sh', '-c', 'echo "héllo"'],
  env: ['PATH=/usr/bin:/bin', 'EMPTY='],
};

describe('encodeExecRequest', () => {
  it('lays out big-endian ids, groups and length-prefixed UTF-8 strings', () => {
    const bytes = encodeExecRequest({ uid: 1, gid: 2, additionalGids: [3], cwd: '/', argv: ['ls'], env: ['A=b'] });
    expect(bytes.toString('hex')).toBe(
      [
        '00000001', // uid
        '00000002', // gid
        '00000001',
        '00000003', // one group: 3
        '00000001',
        '2f', // cwd "/"
        '00000001',
        '00000002',
        '6c73', // argc 1, "ls"
        '00000001',
        '00000003',
        '413d62', // envc 1, "A=b"
      ].join(''),
    );
  });

  it('round-trips through the decoder (multi-byte characters, empty strings, no groups)', () => {
    expect(decodeExecRequest(encodeExecRequest(REQUEST))).toEqual(REQUEST);
    const plain = { ...REQUEST, additionalGids: [], argv: ['true', ''], env: [] };
    expect(decodeExecRequest(encodeExecRequest(plain))).toEqual(plain);
  });

  it('refuses what the agent cannot carry or would reject', () => {
    const invalid = (change: Partial<AgentExecRequest>) => {
      try {
        encodeExecRequest({ ...REQUEST, ...change });
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidError);
        expect((error as InvalidError).reason).toBe('InvalidExecRequest');
        return (error as InvalidError).causes.map((cause) => cause.field);
      }
      throw new Error('expected an InvalidError');
    };
    expect(invalid({ uid: -1 })).toEqual(['uid']);
    expect(invalid({ gid: 0xffff_ffff })).toEqual(['gid']);
    expect(invalid({ uid: 1.5 })).toEqual(['uid']);
    expect(invalid({ additionalGids: [1, -2] })).toEqual(['additionalGids[1]']);
    expect(invalid({ cwd: 'relative' })).toEqual(['cwd']);
    expect(invalid({ argv: [] })).toEqual(['argv']);
    expect(invalid({ argv: [''] })).toEqual(['argv']);
    expect(invalid({ argv: ['a\0b'] })).toEqual(['argv[0]']);
    expect(invalid({ env: ['A=1', 'B=\0'] })).toEqual(['env[1]']);
    expect(invalid({ argv: ['echo', 'x'.repeat(4 * 1024 * 1024)] })).toEqual(['argv']);
  });
});

describe('decodeExecRequest', () => {
  it('rejects truncated input, impossible counts and trailing bytes', () => {
    const bytes = encodeExecRequest(REQUEST);
    expect(() => decodeExecRequest(bytes.subarray(0, bytes.length - 1))).toThrow(/truncated/);
    expect(() => decodeExecRequest(Buffer.concat([bytes, Buffer.of(0)]))).toThrow(/trailing/);
    const huge = Buffer.from(bytes);
    huge.writeUInt32BE(0x7fff_ffff, 8); // ngroups
    expect(() => decodeExecRequest(huge)).toThrow(/cannot fit/);
  });
});

describe('connectionHeader', () => {
  it('is the magic, the kind and the 16-byte id', () => {
    const id = Buffer.alloc(16, 0xab);
    const header = connectionHeader(AgentConnectionKind.stderr, id);
    expect(header).toHaveLength(21);
    expect(header.subarray(0, 4).toString('latin1')).toBe('WXA1');
    expect(header[4]).toBe(3);
    expect(header.subarray(5).equals(id)).toBe(true);
    expect(() => connectionHeader(AgentConnectionKind.control, Buffer.alloc(8))).toThrow();
  });
});

describe('initArgs', () => {
  it('runs the init alone, or the image command under it as the container user', () => {
    expect(initArgs([])).toEqual(['/dev/.warren/init']);
    expect(initArgs(['node', 'server.js'], { uid: 1000, gid: 1000, additionalGids: [27, 44] })).toEqual([
      '/dev/.warren/init',
      '--uid',
      '1000',
      '--gid',
      '1000',
      '--groups',
      '27,44',
      '--',
      'node',
      'server.js',
    ]);
    expect(initArgs(['--weird'], { uid: 0, gid: 0 })).toEqual(['/dev/.warren/init', '--uid', '0', '--gid', '0', '--', '--weird']);
  });
});

describe('execAgentSourcePath', () => {
  it('finds the C source from src and from dist, and fails clearly without it', async () => {
    expect(execAgentSourcePath()).toMatch(/src\/linux\/exec-agent\.c$/);
    const root = await mkdtemp(join(tmpdir(), 'warren-agent-path-'));
    try {
      await mkdir(join(root, 'dist/linux'), { recursive: true });
      expect(() => execAgentSourcePath(join(root, 'dist/linux'))).toThrow(ExecAgentBuildError);
      await mkdir(join(root, 'src/linux'), { recursive: true });
      await writeFile(join(root, 'src/linux/exec-agent.c'), '');
      expect(execAgentSourcePath(join(root, 'dist/linux'))).toBe(join(root, 'dist/linux/../../src/linux/exec-agent.c'));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
