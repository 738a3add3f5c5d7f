// Finds the devcontainer.json of a checked-out repository, in the order the Dev Container spec gives.
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { InvalidError } from '@warren/base';
import { type ParsedDevcontainerConfig, readDevcontainerConfig } from './parse.js';

/** Where a repository's devcontainer.json was found. */
export interface LocatedDevcontainerConfig {
  /** Absolute path of the file on the runner host. */
  path: string;
  /** Path relative to the repository root, with `/` separators, e.g. `.devcontainer/devcontainer.json`. */
  relativePath: string;
}

/**
 * Locates the devcontainer.json in the repository checked out at `repositoryDir`.
 *
 * Order (https://containers.dev/implementors/spec/#devcontainerjson): `configPath` when given
 * (`spec.devcontainer.path`), else `.devcontainer/devcontainer.json`, else `.devcontainer.json`, else
 * the single `.devcontainer/<folder>/devcontainer.json` (one level deep, as the reference CLI and
 * editors list them).
 *
 * @param repositoryDir absolute path of the repository root.
 * Files that are symlinks pointing outside the repository are treated as missing.
 *
 * @param configPath repository-relative path from `spec.devcontainer.path`; must stay inside the repository.
 * @returns the file, or `undefined` when the repository has none (the caller uses its default image).
 * @throws {InvalidError} reason `InvalidDevcontainerConfig` when `configPath` escapes the repository or
 *   does not name a file, or when several `.devcontainer/<folder>/devcontainer.json` files exist.
 */
export async function locateDevcontainerConfig(repositoryDir: string, configPath?: string): Promise<LocatedDevcontainerConfig | undefined> {
  const root = path.resolve(repositoryDir);
  if (configPath !== undefined && configPath !== '') {
    const normalized = path.posix.normalize(configPath.replaceAll('\\', '/'));
    if (path.posix.isAbsolute(normalized) || normalized === '..' || normalized.startsWith('../')) {
      throw invalid(`spec.devcontainer.path "${configPath}" must be a path inside the repository`);
    }
    const absolute = path.join(root, normalized);
    if (!(await isFileInside(root, absolute))) {
      throw invalid(
        `spec.devcontainer.path "${configPath}" does not exist in the repository (or is not a file); ` +
          'fix the path or remove it to use .devcontainer/devcontainer.json',
      );
    }
    return { path: absolute, relativePath: normalized };
  }

  for (const candidate of ['.devcontainer/devcontainer.json', '.devcontainer.json']) {
    const absolute = path.join(root, candidate);
    if (await isFileInside(root, absolute)) return { path: absolute, relativePath: candidate };
  }

  let entries: string[];
  try {
    entries = (await readdir(path.join(root, '.devcontainer'), { withFileTypes: true }))
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name)
      .sort();
  } catch {
    return undefined; // no .devcontainer folder at all
  }
  const found: string[] = [];
  for (const name of entries) {
    const relativePath = `.devcontainer/${name}/devcontainer.json`;
    if (await isFileInside(root, path.join(root, relativePath))) found.push(relativePath);
  }
  if (found.length === 0) return undefined;
  if (found.length > 1) {
    throw invalid(
      `the repository has ${found.length} devcontainer configurations (${found.join(', ')}); ` +
        'set spec.devcontainer.path to the one to use',
    );
  }
  const relativePath = found[0]!;
  return { path: path.join(root, relativePath), relativePath };
}

function invalid(message: string): InvalidError {
  return new InvalidError(message, [{ field: 'spec.devcontainer.path', message }], 'InvalidDevcontainerConfig');
}

/**
 * True when `file` is a regular file whose real path (symlinks resolved) lies inside `root`: the runner
 * reads it with its own privileges, so a symlink such as `devcontainer.json -> /etc/shadow` must not work.
 */
async function isFileInside(root: string, file: string): Promise<boolean> {
  try {
    const [realRoot, realFile] = await Promise.all([realpath(root), realpath(file)]);
    if (!realFile.startsWith(realRoot + path.sep)) return false;
    return (await stat(realFile)).isFile();
  } catch {
    return false;
  }
}

/**
 * Locates ({@link locateDevcontainerConfig}) and parses (`readDevcontainerConfig`) the repository's
 * devcontainer.json.
 * @returns the parsed config with `source` set to its repository-relative path, or `undefined` when
 *   the repository has none.
 * @throws {InvalidError} reason `InvalidDevcontainerConfig` as both steps do.
 */
export async function loadDevcontainerConfig(repositoryDir: string, configPath?: string): Promise<ParsedDevcontainerConfig | undefined> {
  const located = await locateDevcontainerConfig(repositoryDir, configPath);
  return located === undefined ? undefined : readDevcontainerConfig(located.path, located.relativePath);
}
