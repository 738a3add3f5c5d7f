// `warren ports ...`: list an environment's ports, open one (a URL with a short-lived token), make one public or private.
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { InvalidError } from '@warren/base';
import { type Environment, type EnvironmentPatch, PortOpenSchema } from '@warren/api';
import type { CommandContext } from '../command-context.js';
import { render, type Column } from '../output.js';

type PortRow = Environment['status']['ports'][number];

const portColumns: readonly Column<PortRow>[] = [
  { header: 'PORT', value: (port) => String(port.port) },
  { header: 'VISIBILITY', value: (port) => port.visibility },
  { header: 'SOURCE', value: (port) => port.source },
  { header: 'LABEL', value: (port) => port.label ?? '' },
  { header: 'URL', value: (port) => port.url ?? '' },
];

/** Parses a port argument. @throws {InvalidError} outside 1-65535. */
export function parsePort(text: string): number {
  const port = Number(text);
  if (!/^[0-9]{1,5}$/.test(text) || port < 1 || port > 65535)
    throw new InvalidError(`port must be an integer in 1-65535, got "${text}"`, [{ field: 'port', message: 'out of range' }]);
  return port;
}

/**
 * The ports of an environment for `ports list`: `status.ports` (detected, forwardPorts, spec) plus spec ports
 * not yet in the status (e.g. of a stopped environment), sorted by port.
 */
export function portRows(environment: Environment): PortRow[] {
  const rows = [...environment.status.ports];
  for (const entry of environment.spec.ports) {
    if (!rows.some((row) => row.port === entry.port)) rows.push({ port: entry.port, visibility: entry.visibility, source: 'Spec' });
  }
  return rows.sort((a, b) => a.port - b.port);
}

/** Registers the `ports` command group. */
export function registerPortCommands(program: Command, context: CommandContext): void {
  const ports = program.command('ports').description("list, open and share an environment's ports");

  ports
    .command('list')
    .alias('ls')
    .description('list the ports of an environment (forwardPorts, spec.ports and ports detected listening)')
    .argument('<env>', 'environment name or id')
    .action(async (name: string) => {
      const client = await context.client();
      context.stdout.write(render(portRows(await client.get('Environment', name)), context.options().output, portColumns));
    });

  ports
    .command('open')
    .description('print a URL of the port that logs this browser in (the token in it expires in minutes)')
    .argument('<env>', 'environment name or id')
    .argument('<port>', 'port inside the environment')
    .option('--browser', 'also open the URL with xdg-open')
    .action(async (name: string, portText: string, options: { browser?: boolean }) => {
      const port = parsePort(portText);
      const client = await context.client();
      const opened = PortOpenSchema.parse(
        await client.request('POST', `/api/v1/environments/${encodeURIComponent(name)}/ports/${port}/open`, {}),
      );
      if (context.options().output === 'table') context.stdout.write(`${opened.url}\n`);
      else context.stdout.write(render(opened, context.options().output, []));
      if (options.browser) {
        const child = spawn('xdg-open', [opened.url], { stdio: 'ignore', detached: true });
        child.on('error', () => context.stderr.write('could not start xdg-open; open the URL above yourself\n'));
        child.unref();
      }
    });

  for (const visibility of ['Public', 'Owner'] as const) {
    ports
      .command(visibility === 'Public' ? 'public' : 'private')
      .description(
        visibility === 'Public'
          ? 'let anyone with the URL reach the port'
          : 'only the owner (after `warren ports open`) reaches the port (default)',
      )
      .argument('<env>', 'environment name or id')
      .argument('<port>', 'port inside the environment')
      .action(async (name: string, portText: string) => {
        const port = parsePort(portText);
        const client = await context.client();
        const environment = await client.get('Environment', name);
        const others = environment.spec.ports.filter((entry) => entry.port !== port);
        // Owner is the default: a private port needs no entry, so `private` removes it.
        const next = visibility === 'Public' ? [...others, { port, visibility }].sort((a, b) => a.port - b.port) : others;
        const patch: EnvironmentPatch = { metadata: { resourceVersion: environment.metadata.resourceVersion }, spec: { ports: next } };
        const updated = await client.patch('Environment', environment.metadata.id, patch);
        context.stdout.write(render(portRows(updated), context.options().output, portColumns));
      });
  }
}
