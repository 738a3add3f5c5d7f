// `warren runner list`, `warren class list|create`, `warren login`.
import type { Command } from 'commander';
import { InvalidError } from '@warren/base';
import { WarrenClient } from '@warren/api';
import type { CommandContext } from '../command-context.js';
import { saveContext } from '../context.js';
import { classColumns, parseBytes, render, runnerColumns } from '../output.js';

/** Registers `login`, `runner list` and `class list|create`. */
export function registerAdminCommands(program: Command, context: CommandContext): void {
  program
    .command('login')
    .description('save a server URL and token as the current context')
    .requiredOption('--server <url>', 'Warren server URL')
    .requiredOption('--token <token>', 'personal access token')
    .option('--context <name>', 'name for the saved context', 'default')
    .action(async (options: { server: string; token: string; context: string }) => {
      const client = new WarrenClient({ server: options.server, token: options.token });
      const principal = await client.whoami();
      await saveContext(options.context, { server: client.server, token: options.token });
      context.stderr.write(`logged in to ${client.server} as ${principal.name}\n`);
    });

  const runner = program.commands.find((command) => command.name() === 'runner')!;
  runner
    .command('list')
    .alias('ls')
    .description('list runners')
    .action(async () => {
      const client = await context.client();
      context.stdout.write(render((await client.list('Runner')).items, context.options().output, runnerColumns));
    });

  const environmentClass = program.command('class').description('manage environment classes (sizes)');
  environmentClass
    .command('list')
    .alias('ls')
    .description('list environment classes')
    .action(async () => {
      const client = await context.client();
      context.stdout.write(render((await client.list('EnvironmentClass')).items, context.options().output, classColumns));
    });
  environmentClass
    .command('create')
    .description('create an environment class (admins)')
    .argument('<name>', 'class name')
    .requiredOption('--cpu <millicores>', 'CPU limit, e.g. 2000m or 2 (cores)')
    .requiredOption('--memory <size>', 'memory limit, e.g. 4Gi')
    .option('--swap <size>', 'swap on top of memory', '0')
    .option('--pids <n>', 'process limit', '4096')
    .option('--display-name <text>', 'human name')
    .action(async (name: string, options: { cpu: string; memory: string; swap: string; pids: string; displayName?: string }) => {
      const client = await context.client();
      const created = await client.createEnvironmentClass({
        metadata: { name },
        spec: {
          cpuMillicores: parseMillicores(options.cpu),
          memoryBytes: requireBytes(options.memory, '--memory'),
          swapBytes: requireBytes(options.swap, '--swap'),
          pids: Number(options.pids),
          ...(options.displayName ? { displayName: options.displayName } : {}),
        },
      });
      context.stdout.write(render(created, context.options().output, classColumns));
    });
}

/** Parses `2000m` (millicores) or `2`/`0.5` (cores). @throws {InvalidError}. */
export function parseMillicores(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(text.trim());
  if (!match) throw new InvalidError(`--cpu must be millicores like "2000m" or cores like "2", got "${text}"`);
  return match[2] ? Math.round(Number(match[1])) : Math.round(Number(match[1]) * 1000);
}

function requireBytes(text: string, flag: string): number {
  const bytes = parseBytes(text);
  if (bytes === undefined) throw new InvalidError(`${flag} must be a size like "4Gi" or "512Mi", got "${text}"`);
  return bytes;
}
