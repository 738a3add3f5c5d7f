// The runner's small C programs (the idmap helper, the exec agent): their sources ship in `src/linux/` and are
// compiled with the host's `cc` on first use into a content-addressed cache, since the runner is a Node package
// with no build step of its own for native code.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type Logger, silentLogger } from '@warren/base';
import { exec } from './exec.js';

/**
 * Finds the C source `file` next to a module: in `moduleDir` when running from sources (vitest, tsx), in
 * `moduleDir/../../src/<same folder>/` when running compiled from `dist/<folder>/` (e.g. `dist/linux/` →
 * `src/linux/`).
 * @returns the path, or undefined when neither exists (a package shipped without `src/`).
 */
export function locateCSource(file: string, moduleDir: string): { found?: string; candidates: string[] } {
  const candidates = [join(moduleDir, file), join(moduleDir, '..', '..', 'src', basename(moduleDir), file)];
  const found = candidates.find((candidate) => existsSync(candidate));
  return found === undefined ? { candidates } : { found, candidates };
}

/**
 * Returns `<cacheDir>/<name>-<first 12 hex of sha256(flags, source)>`, compiling `sourcePath` with
 * `cc <flags>` first when that file does not exist yet (mode 0755). An edited source or other flags give a new
 * binary; concurrent first uses are safe (each compiles to a temporary name, then rename(2)).
 * @param cacheDir e.g. `<dataDir>/bin`; created if missing.
 * @throws {ExecError} when the compiler fails (the temporary file is removed); errno errors for unreadable sources.
 */
export async function compileCached(input: {
  sourcePath: string;
  cacheDir: string;
  name: string;
  flags: readonly string[];
  logger?: Logger;
}): Promise<string> {
  const source = await readFile(input.sourcePath);
  const digest = createHash('sha256').update(input.flags.join(' ')).update('\0').update(source).digest('hex').slice(0, 12);
  const binary = join(input.cacheDir, `${input.name}-${digest}`);
  if (existsSync(binary)) return binary;
  await mkdir(input.cacheDir, { recursive: true });
  const temporary = `${binary}.tmp-${process.pid}-${Date.now()}`;
  try {
    await exec(['cc', ...input.flags, '-o', temporary, input.sourcePath], { logger: input.logger });
    await chmod(temporary, 0o755);
    await rename(temporary, binary);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  (input.logger ?? silentLogger).info({ binary }, `${input.name} compiled`);
  return binary;
}
