// `warren runner list`, `warren class list|create|update`, `warren login`.
import type { Command } from 'commander';
import { WarrenClient } from '@warren/api';
import type { CommandContext } from '../command-context.js';
import { saveContext } from '../context.js';
import { classColumns, render, runnerColumns } from '../output.js';
import { type ClassFlags, addClassFlags, classPatchFromFlags, classSpecFromFlags } from './class-flags.js';

/** Registers `login`, `runner list` and `class list|create|update`. */
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
  addClassFlags(
    environmentClass.command('create').description('create an environment class (admins)').argument('<name>', 'class name'),
    true,
  ).action(async (name: string, options: ClassFlags) => {
    const spec = classSpecFromFlags(options);
    const client = await context.client();
    const created = await client.createEnvironmentClass({ metadata: { name }, spec });
    context.stdout.write(render(created, context.options().output, classColumns));
  });
  addClassFlags(
    environmentClass
      .command('update')
      .description('change fields of an environment class (admins); running environments keep their limits until restarted')
      .argument('<name>', 'class name'),
    false,
  ).action(async (name: string, options: ClassFlags) => {
    const spec = classPatchFromFlags(options);
    const client = await context.client();
    const updated = await client.patch('EnvironmentClass', name, { spec });
    context.stdout.write(render(updated, context.options().output, classColumns));
  });
}
