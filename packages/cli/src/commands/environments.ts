// `warren env ...`: create, list, get, start, stop, delete, logs, exec, terminal, top (top.ts), keepalive.
import type { Command } from 'commander';
import { Option } from 'commander';
import WebSocket from 'ws';
import { InvalidError } from '@warren/base';
import { splitGitUrlRef, validateGitUrl, type EnvironmentCreate, type EnvironmentPhase } from '@warren/api';
import { execInEnvironment, followLogs, openTerminal } from '@warren/runner/access-client';
import type { CommandContext } from '../command-context.js';
import { environmentColumns, render } from '../output.js';
import { waitForPhase } from '../wait.js';
import { registerTopCommand } from './top.js';

const DEFAULT_WAIT_SECONDS = 900;

/** Registers the `env` command group. `setExitCode` carries `env exec`'s remote exit code out. */
export function registerEnvironmentCommands(program: Command, context: CommandContext, setExitCode: (code: number) => void): void {
  const env = program.command('env').description('manage development environments');
  const print = (value: Parameters<typeof render>[0]) => {
    context.stdout.write(render(value as never, context.options().output, environmentColumns));
  };
  const waitOption = () => new Option('--wait', 'wait until the change is done, showing progress on stderr');
  const timeoutOption = () => new Option('--timeout <seconds>', 'how long --wait waits').default(String(DEFAULT_WAIT_SECONDS));

  env
    .command('create')
    .description('create an environment from a git repository')
    .argument('<git-url>', 'repository URL, optionally with #branch, #tag or #commit')
    .option('--name <name>', 'environment name (default: derived from the repository)')
    .option('--class <class>', 'environment class', 'default')
    .option('--devcontainer-path <path>', 'path of devcontainer.json inside the repository')
    .option('--inactivity-timeout <seconds>', 'stop after this many idle seconds (0 = never)')
    .addOption(waitOption())
    .addOption(timeoutOption())
    .action(
      async (
        gitUrl: string,
        options: { name?: string; class: string; devcontainerPath?: string; inactivityTimeout?: string; wait?: boolean; timeout: string },
      ) => {
        const { url, ref } = splitGitUrlRef(gitUrl);
        const problem = validateGitUrl(url);
        if (problem) throw new InvalidError(`invalid git URL "${url}": ${problem}`, [{ field: 'spec.source.git.url', message: problem }]);
        const body: EnvironmentCreate = {
          metadata: options.name ? { name: options.name } : {},
          spec: {
            source: { git: ref ? { url, ref } : { url } },
            className: options.class,
            ...(options.devcontainerPath ? { devcontainer: { path: options.devcontainerPath } } : {}),
            ...(options.inactivityTimeout !== undefined
              ? { timeouts: { inactivitySeconds: positiveInteger(options.inactivityTimeout, '--inactivity-timeout') } }
              : {}),
          },
        };
        const client = await context.client();
        let environment = await client.createEnvironment(body);
        if (options.wait) {
          environment = (await waitForPhase(client, environment, ['Running'], positiveInteger(options.timeout, '--timeout')))!;
        }
        print(environment);
      },
    );

  env
    .command('list')
    .alias('ls')
    .description('list environments')
    .action(async () => {
      const client = await context.client();
      print((await client.list('Environment')).items);
    });

  env
    .command('get')
    .description('show one environment')
    .argument('<env>', 'environment name or id')
    .action(async (idOrName: string) => {
      const client = await context.client();
      print(await client.get('Environment', idOrName));
    });

  const phaseCommand = (name: string, description: string, desired: 'Running' | 'Stopped', target: EnvironmentPhase) =>
    env
      .command(name)
      .description(description)
      .argument('<env>', 'environment name or id')
      .addOption(waitOption())
      .addOption(timeoutOption())
      .action(async (idOrName: string, options: { wait?: boolean; timeout: string }) => {
        const client = await context.client();
        let environment = await client.setDesiredPhase(idOrName, desired);
        if (options.wait) environment = (await waitForPhase(client, environment, [target], positiveInteger(options.timeout, '--timeout')))!;
        print(environment);
      });
  phaseCommand('start', 'start a stopped environment', 'Running', 'Running');
  phaseCommand('stop', 'stop an environment, keeping its disk state', 'Stopped', 'Stopped');

  env
    .command('delete')
    .alias('rm')
    .description('delete an environment and everything it stored')
    .argument('<env>', 'environment name or id')
    .addOption(waitOption())
    .addOption(timeoutOption())
    .action(async (idOrName: string, options: { wait?: boolean; timeout: string }) => {
      const client = await context.client();
      const environment = await client.delete('Environment', idOrName);
      if (options.wait) await waitForPhase(client, environment, ['Deleted'], positiveInteger(options.timeout, '--timeout'));
      context.stderr.write(`environment ${environment.metadata.name} ${options.wait ? 'deleted' : 'is being deleted'}\n`);
    });

  env
    .command('logs')
    .description('show the output of lifecycle commands (onCreate, postCreate, postStart ...)')
    .argument('<env>', 'environment name or id')
    .option('-f, --follow', 'keep following new output')
    .action(async (idOrName: string, options: { follow?: boolean }) => {
      const client = await context.client();
      const grant = await client.createAccessGrant(idOrName);
      await followLogs(grant, { follow: options.follow ?? false, write: (chunk) => context.stdout.write(chunk) });
    });

  env
    .command('exec')
    .description('run a command in an environment as its remoteUser, in the workspace folder')
    .argument('<env>', 'environment name or id')
    .argument('<command...>', 'the command and its arguments (put them after --)')
    .option('-t, --tty', 'allocate a terminal')
    .action(async (idOrName: string, argv: string[], options: { tty?: boolean }) => {
      const client = await context.client();
      const grant = await client.createAccessGrant(idOrName);
      const code = await execInEnvironment(grant, argv, {
        stdin: process.stdin.isTTY && !options.tty ? undefined : process.stdin,
        stdout: process.stdout,
        stderr: process.stderr,
        tty: options.tty ?? false,
        WebSocket,
      });
      setExitCode(code);
    });

  env
    .command('terminal')
    .description('open an interactive shell in an environment; --session reconnects to one that is still alive')
    .argument('<env>', 'environment name or id')
    .option('--session <id>', 'reconnect to this terminal session (printed when a terminal opens)')
    .action(async (idOrName: string, options: { session?: string }) => {
      const client = await context.client();
      const grant = await client.createAccessGrant(idOrName);
      const tty = process.stdin.isTTY && process.stdout.isTTY;
      const size = () => (process.stdout.columns && process.stdout.rows ? { cols: process.stdout.columns, rows: process.stdout.rows } : {});
      const terminal = await openTerminal(grant, {
        stdin: process.stdin,
        stdout: process.stdout,
        ...size(),
        ...(options.session ? { session: options.session } : {}),
        WebSocket,
      });
      context.stderr.write(
        `terminal session ${terminal.session}${terminal.resumed ? ' (resumed)' : ''}; reconnect with: warren env terminal ${idOrName} --session ${terminal.session}\r\n`,
      );
      const onResize = () => {
        const { cols, rows } = size();
        if (cols && rows) terminal.resize(cols, rows);
      };
      if (tty) {
        process.stdin.setRawMode(true);
        process.stdout.on('resize', onResize);
      }
      process.stdin.resume();
      try {
        const end = await terminal.done;
        if (end.kind === 'exit') setExitCode(end.code);
        else
          context.stderr.write(`\r\nterminal detached; reconnect with: warren env terminal ${idOrName} --session ${terminal.session}\r\n`);
      } finally {
        if (tty) {
          process.stdout.off('resize', onResize);
          process.stdin.setRawMode(false);
        }
        process.stdin.pause();
      }
    });

  registerTopCommand(env, context);

  env
    .command('keepalive')
    .description('record activity so the inactivity timeout does not stop the environment')
    .argument('<env>', 'environment name or id')
    .action(async (idOrName: string) => {
      const client = await context.client();
      print(await client.keepalive(idOrName));
    });
}

/** Parses a non-negative integer flag. @throws {InvalidError} naming the flag. */
export function positiveInteger(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new InvalidError(`${flag} must be a whole number of seconds, got "${text}"`);
  return value;
}
