// The CLI context file: which server to talk to and with which token. Stored at
// `$XDG_CONFIG_HOME/warren/config.json` (default `~/.config/warren/config.json`), file mode 0600
// because it holds a bearer token.
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { InvalidError } from '@warren/base';

/** One saved server + token pair. */
export interface Context {
  server: string;
  token: string;
}

/** The whole config file: named contexts and the current one. */
export interface ContextFile {
  current?: string;
  contexts: Record<string, Context>;
}

/** Path of the CLI config file (`WARREN_CONFIG` overrides, for tests). */
export function contextFilePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.WARREN_CONFIG) return env.WARREN_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'warren', 'config.json');
}

/** Reads the config file; a missing file is an empty config. @throws {InvalidError} when it is not valid JSON. */
export async function readContextFile(path = contextFilePath()): Promise<ContextFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { contexts: {} };
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as ContextFile;
    return { current: parsed.current, contexts: parsed.contexts ?? {} };
  } catch (error) {
    throw new InvalidError(`${path} is not valid JSON: ${(error as Error).message}; fix or delete it and run "warren login"`);
  }
}

/** Saves `context` under `name` and makes it current. Written atomically with mode 0600. */
export async function saveContext(name: string, context: Context, path = contextFilePath()): Promise<void> {
  const file = await readContextFile(path);
  file.contexts[name] = context;
  file.current = name;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, path);
}

/**
 * The context to use: `--server`/`--token` flags or `WARREN_SERVER`/`WARREN_TOKEN` win over the file.
 * @throws {InvalidError} when there is none, saying to run `warren up` or `warren login`.
 */
export async function resolveContext(flags: { server?: string; token?: string }, env = process.env): Promise<Context> {
  const file = await readContextFile(contextFilePath(env));
  const saved = file.current ? file.contexts[file.current] : undefined;
  const server = flags.server ?? env.WARREN_SERVER ?? saved?.server;
  const token = flags.token ?? env.WARREN_TOKEN ?? saved?.token;
  if (!server || !token) {
    throw new InvalidError('no Warren server configured: run "warren up" on this machine or "warren login --server URL --token T"');
  }
  return { server, token };
}
