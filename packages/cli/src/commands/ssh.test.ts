import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Environment } from '@warren/api';
import { describe, expect, it } from 'vitest';
import { type SshTarget, parseSshEndpoint, sshArguments, sshConfigBlock, writeKnownHosts } from './ssh.js';

const target: SshTarget = {
  environment: { metadata: { name: 'web' } } as Environment,
  alias: 'web.warren',
  hostName: 'runner1.example.com',
  port: 2222,
  user: 'web',
  hostKeyAlias: 'warren-runner-r1',
  hostKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDw1Dskk7W8qK+OG453urTUZ2h+rKGeofv5Gf9LLiibH',
};

describe('warren ssh-config', () => {
  it('parses published endpoints and replaces wildcard bind addresses by the server host', () => {
    expect(parseSshEndpoint('runner1:2222', 'server')).toEqual({ host: 'runner1', port: 2222 });
    expect(parseSshEndpoint('0.0.0.0:2222', 'server.example')).toEqual({ host: 'server.example', port: 2222 });
    expect(parseSshEndpoint('[::1]:22', 'server')).toEqual({ host: '::1', port: 22 });
    expect(() => parseSshEndpoint('nonsense', 'server')).toThrow(/not host:port/);
  });

  it('writes a Host block and ssh arguments that pin the published host key', () => {
    expect(sshConfigBlock(target, '/k')).toBe(
      'Host web.warren\n  HostName runner1.example.com\n  Port 2222\n  User web\n  HostKeyAlias warren-runner-r1\n  UserKnownHostsFile "/k"\n  StrictHostKeyChecking yes\n',
    );
    expect(sshArguments(target, '/k')).toEqual([
      '-p',
      '2222',
      '-o',
      'HostKeyAlias=warren-runner-r1',
      '-o',
      'UserKnownHostsFile=/k',
      '-o',
      'StrictHostKeyChecking=yes',
      '-l',
      'web',
      'runner1.example.com',
    ]);
  });

  it("keeps other runners' known_hosts lines and replaces a runner's old key", async () => {
    const directory = await mkdtemp(join(tmpdir(), 'warren-known-hosts-'));
    try {
      const path = join(directory, 'known_hosts');
      await writeFile(path, 'warren-runner-r0 ssh-ed25519 AAAA0\nwarren-runner-r1 ssh-ed25519 OLD\n');
      await writeKnownHosts([target], path);
      expect(await readFile(path, 'utf8')).toBe(`warren-runner-r0 ssh-ed25519 AAAA0\nwarren-runner-r1 ${target.hostKey}\n`);
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
