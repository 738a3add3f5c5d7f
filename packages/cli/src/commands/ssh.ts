// `warren ssh-key add|list|delete`, `warren ssh-config [<env>]` and `warren ssh <env> [-- CMD]`: OpenSSH access to
// environments through the runners' SSH gateways. The gateways' host keys come from the server (Runner
// `status.info.sshHostKey`) and go into a known_hosts file Warren owns, so there is no trust-on-first-use prompt.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { SSH_HOST_KEY_INFO, type Environment, type Runner, type SshKey, type WarrenClient } from '@warren/api';
import { WarrenError } from '@warren/base';
import { contextFilePath, resolveContext } from '../context.js';
import type { CommandContext } from '../command-context.js';
import { render } from '../output.js';

/** Where Warren keeps the gateways' host keys: `known_hosts` next to the CLI config file. */
export function knownHostsPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dirname(contextFilePath(env)), 'known_hosts');
}

/** How OpenSSH reaches one environment. */
export interface SshTarget {
  environment: Environment;
  /** `<env>.warren`. */
  alias: string;
  hostName: string;
  port: number;
  /** The SSH user name: the environment's name. */
  user: string;
  /** Name under which the runner's host key is stored (`warren-runner-<runner name>`). */
  hostKeyAlias: string;
  /** One OpenSSH public key line. */
  hostKey: string;
}

/**
 * Splits `host:port` (`[v6]:port` too). A wildcard bind address (0.0.0.0, ::) is replaced by `fallbackHost` (the
 * server's host name, for `warren up` where server and runner share a host).
 */
export function parseSshEndpoint(endpoint: string, fallbackHost: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(endpoint);
  if (!match) throw new WarrenError('InvalidEndpoint', 422, `the runner publishes an SSH endpoint "${endpoint}" that is not host:port`);
  const host = match[1] ?? match[2] ?? '';
  return { host: ['0.0.0.0', '::', ''].includes(host) ? fallbackHost : host, port: Number(match[3]) };
}

/**
 * Resolves how to reach `environment` by SSH: its runner's published endpoint and host key.
 * @throws {WarrenError} `EnvironmentNotScheduled` (409) or `SshUnavailable` (409) when the runner has no gateway.
 */
export async function sshTarget(client: WarrenClient, environment: Environment, serverUrl: string): Promise<SshTarget> {
  const runnerId = environment.status.runnerId;
  if (runnerId === undefined)
    throw new WarrenError('EnvironmentNotScheduled', 409, `environment "${environment.metadata.name}" is not on a runner yet`);
  const runner: Runner = await client.get('Runner', runnerId);
  const endpoint = runner.status.endpoints.ssh;
  const hostKey = runner.status.info?.[SSH_HOST_KEY_INFO];
  if (!endpoint || !hostKey) throw new WarrenError('SshUnavailable', 409, `runner "${runner.metadata.name}" has no SSH gateway`);
  const { host, port } = parseSshEndpoint(endpoint, new URL(serverUrl).hostname);
  const name = environment.metadata.name;
  return {
    environment,
    alias: `${name}.warren`,
    hostName: host,
    port,
    user: name,
    hostKeyAlias: `warren-runner-${runner.metadata.name}`,
    hostKey,
  };
}

/** Writes the host keys of `targets` into Warren's known_hosts file, keeping other runners' lines. */
export async function writeKnownHosts(targets: readonly SshTarget[], path = knownHostsPath()): Promise<void> {
  const lines = new Map<string, string>();
  const existing = await readFile(path, 'utf8').catch(() => '');
  for (const line of existing.split('\n')) {
    const alias = line.split(' ')[0];
    if (alias) lines.set(alias, line);
  }
  for (const target of targets) lines.set(target.hostKeyAlias, `${target.hostKeyAlias} ${target.hostKey}`);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, [...lines.values()].join('\n') + '\n', { mode: 0o644 });
}

/** A `Host <env>.warren` block for ssh_config(5). */
export function sshConfigBlock(target: SshTarget, knownHosts = knownHostsPath()): string {
  return [
    `Host ${target.alias}`,
    `  HostName ${target.hostName}`,
    `  Port ${target.port}`,
    `  User ${target.user}`,
    `  HostKeyAlias ${target.hostKeyAlias}`,
    `  UserKnownHostsFile "${knownHosts}"`,
    '  StrictHostKeyChecking yes',
    '',
  ].join('\n');
}

/** `ssh` arguments equivalent to {@link sshConfigBlock}, for `warren ssh`. */
export function sshArguments(target: SshTarget, knownHosts = knownHostsPath()): string[] {
  return [
    '-p',
    String(target.port),
    '-o',
    `HostKeyAlias=${target.hostKeyAlias}`,
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-l',
    target.user,
    target.hostName,
  ];
}

async function readKeyArgument(file: string): Promise<string> {
  if (file !== '-') return readFile(file, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Registers `ssh-key`, `ssh-config` and `ssh`. `setExitCode` receives the remote command's exit status. */
export function registerSshCommands(program: Command, context: CommandContext, setExitCode: (code: number) => void): void {
  const keys = program.command('ssh-key').description('manage your SSH public keys (used to log in to your environments)');
  keys
    .command('add <file>')
    .description('register a public key from a file (e.g. ~/.ssh/id_ed25519.pub) or "-" for stdin')
    .option('--name <name>', 'a name for the key (default: its comment)')
    .action(async (file: string, options: { name?: string }) => {
      const publicKey = (await readKeyArgument(file)).trim();
      const client = await context.client();
      const key = await client.request<SshKey>('POST', '/api/v1/sshkeys', { publicKey, ...(options.name ? { name: options.name } : {}) });
      context.stdout.write(render(key, context.options().output, keyColumns));
    });
  keys
    .command('list')
    .alias('ls')
    .description('list your SSH public keys')
    .action(async () => {
      const client = await context.client();
      const list = await client.request<{ items: SshKey[] }>('GET', '/api/v1/sshkeys');
      context.stdout.write(render(list.items, context.options().output, keyColumns));
    });
  keys
    .command('delete <key>')
    .alias('rm')
    .description('remove a key (by id, name or fingerprint)')
    .action(async (key: string) => {
      const client = await context.client();
      const removed = await client.request<SshKey>('DELETE', `/api/v1/sshkeys/${encodeURIComponent(key)}`);
      context.stdout.write(render(removed, context.options().output, keyColumns));
    });

  program
    .command('ssh-config [environment]')
    .description('print "Host <env>.warren" blocks for ~/.ssh/config (all your environments by default) and write the runners\' host keys')
    .option('--write <file>', 'write the blocks to this file (e.g. ~/.ssh/warren.config, then "Include warren.config")')
    .action(async (name: string | undefined, options: { write?: string }) => {
      const client = await context.client();
      const { server } = await resolveContext(context.options());
      const environments = name ? [await client.get('Environment', name)] : (await client.list('Environment')).items;
      const targets: SshTarget[] = [];
      for (const environment of environments) {
        try {
          targets.push(await sshTarget(client, environment, server));
        } catch (error) {
          if (name) throw error;
          context.stderr.write(`skipping ${environment.metadata.name}: ${(error as Error).message}\n`);
        }
      }
      await writeKnownHosts(targets);
      const text = targets.map((target) => sshConfigBlock(target)).join('\n');
      if (options.write) {
        await mkdir(dirname(options.write), { recursive: true });
        await writeFile(options.write, text);
        context.stderr.write(`wrote ${targets.length} host blocks to ${options.write}\n`);
      } else {
        context.stdout.write(text);
      }
    });

  program
    .command('ssh <environment> [command...]')
    .description('open a shell in an environment with OpenSSH, or run "-- COMMAND" there')
    .option('-i, --identity <file>', 'private key file (passed to ssh -i)')
    .option('-t, --tty', 'force a terminal for a command (ssh -t)')
    .action(async (name: string, command: string[], options: { identity?: string; tty?: boolean }) => {
      const client = await context.client();
      const { server } = await resolveContext(context.options());
      const target = await sshTarget(client, await client.get('Environment', name), server);
      await writeKnownHosts([target]);
      const args = [...(options.identity ? ['-i', options.identity] : []), ...(options.tty ? ['-t'] : []), ...sshArguments(target)];
      if (command.length > 0) args.push('--', ...command);
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn('ssh', args, { stdio: 'inherit' });
        child.once('error', (error) =>
          reject(new WarrenError('SshNotFound', 500, `cannot run ssh: ${error.message} (install openssh-client)`, { cause: error })),
        );
        child.once('close', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
      });
      setExitCode(code);
    });
}

const keyColumns = [
  { header: 'NAME', value: (key: SshKey) => key.name },
  { header: 'FINGERPRINT', value: (key: SshKey) => key.fingerprint },
  { header: 'ID', value: (key: SshKey) => key.id },
  { header: 'CREATED', value: (key: SshKey) => key.createdTime },
];
