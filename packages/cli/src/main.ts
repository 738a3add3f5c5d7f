// The `warren` command line: `warren up` (server + local runner in one process), `warren server`,
// `warren runner`, `warren login`, and the env/runner/class/image commands.
import { Command, Option } from 'commander';
import { ApiError, WarrenClient, formatStatus } from '@warren/api';
import { WarrenError, errorMessage } from '@warren/base';
import type { CommandContext, GlobalOptions } from './command-context.js';
import { resolveContext } from './context.js';
import {
  registerAdminCommands,
  registerDaemonCommands,
  registerEnvironmentCommands,
  registerImageCommands,
  registerPortCommands,
  registerSshCommands,
} from './commands/index.js';

/**
 * Runs the CLI with `argv` (as `process.argv`: node, script, args...).
 * @returns the process exit code: 0 on success, the remote exit code for `env exec`, 1 on errors
 * (printed as one line from the Status envelope), 2 on usage errors.
 */
export async function main(argv: string[]): Promise<number> {
  const program = new Command('warren')
    .description('Warren: cloud development environments on your own hosts')
    .option('--server <url>', 'Warren server URL (default: the saved context, or WARREN_SERVER)')
    .option('--token <token>', 'bearer token (default: the saved context, or WARREN_TOKEN)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .showHelpAfterError()
    .exitOverride();

  let exitCode = 0;
  const context: CommandContext = {
    options: () => program.opts<GlobalOptions>(),
    client: async () => {
      const resolved = await resolveContext(program.opts<GlobalOptions>());
      return new WarrenClient({ server: resolved.server, token: resolved.token });
    },
    stdout: process.stdout,
    stderr: process.stderr,
  };
  const setExitCode = (code: number) => {
    exitCode = code;
  };
  registerDaemonCommands(program, context);
  registerEnvironmentCommands(program, context, setExitCode);
  registerAdminCommands(program, context);
  registerImageCommands(program, context);
  registerPortCommands(program, context);
  registerSshCommands(program, context, setExitCode);

  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    return reportError(error);
  }
}

/** Prints one line for a failed command and returns its exit code. */
function reportError(error: unknown): number {
  const code = (error as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('commander.')) {
    // commander already printed usage or help; help and version are not failures.
    return code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help' ? 0 : 2;
  }
  if (error instanceof ApiError) {
    process.stderr.write(`error: ${formatStatus(error.status)}\n`);
  } else if (error instanceof WarrenError) {
    const causes = error.causes.map((cause) => `${cause.field}: ${cause.message}`).join('; ');
    process.stderr.write(`error: ${error.message}${causes ? ` (${causes})` : ''}\n`);
  } else {
    process.stderr.write(`error: ${errorMessage(error)}\n`);
  }
  return 1;
}
