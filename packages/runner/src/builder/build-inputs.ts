// What a devcontainer build depends on: the files that go into its cache key and the base images it
// starts from (Dockerfile FROM lines, or the `image` of an image-plus-features config).
import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { InvalidError } from '@warren/base';
import { type ParseError, parse, printParseErrorCode } from 'jsonc-parser';

/** Bump when the meaning of a cache key changes (e.g. what is hashed), so old archives are not reused. */
export const CACHE_KEY_VERSION = 'warren-builder/1';

/** The parts of a devcontainer.json that decide how it is built. */
export interface BuildPlan {
  /** Absolute path of the devcontainer.json. */
  configPath: string;
  /** Its raw bytes (JSONC), hashed as is: every property may matter to the build (args, target, features ...). */
  configText: string;
  /** Absolute path of the Dockerfile for `build.dockerfile` (or legacy `dockerFile`); undefined for `image` configs. */
  dockerfilePath: string | undefined;
  /** Absolute build context directory (`build.context`, default the config's folder); undefined without a Dockerfile. */
  contextDir: string | undefined;
  /** `build.args`, used to expand `ARG`s in FROM lines. */
  buildArgs: Record<string, string>;
  /** `image` for image-plus-features configs. */
  image: string | undefined;
  /** Absolute folders of local features (ids starting with `./` or `../`, relative to the config's folder). */
  localFeatureDirs: string[];
}

/**
 * Reads a devcontainer.json (JSONC) and works out what a build of it needs.
 * Rules from the Dev Container spec (containers.dev/implementors/json_reference): `build.dockerfile` and
 * `build.context` are relative to the devcontainer.json; local features are `./`-relative to its folder
 * (containers.dev/implementors/features-distribution/#addendum-locally-referenced).
 * @throws {InvalidError} (reason `InvalidDevcontainerConfig`) for JSONC syntax errors (with line:column),
 *   a non-object root, or a config with neither a Dockerfile nor features.
 */
export async function readBuildPlan(configPath: string): Promise<BuildPlan> {
  const absolute = resolve(configPath);
  const configText = await readFile(absolute, 'utf8').catch((error: unknown) => {
    throw invalid(`cannot read ${absolute}: ${(error as Error).message}`);
  });
  const errors: ParseError[] = [];
  const config = parse(configText, errors, { allowTrailingComma: true, disallowComments: false }) as unknown;
  if (errors.length > 0) {
    const first = errors[0]!;
    const { line, column } = lineColumn(configText, first.offset);
    throw invalid(`${absolute}:${line}:${column}: ${printParseErrorCode(first.error)}`);
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw invalid(`${absolute}: the root must be an object`);
  const record = config as Record<string, unknown>;
  const folder = dirname(absolute);
  const build = isRecord(record.build) ? record.build : {};
  const dockerfile = stringOrUndefined(build.dockerfile) ?? stringOrUndefined(record.dockerFile);
  const context = stringOrUndefined(build.context) ?? stringOrUndefined(record.context) ?? '.';
  const features = isRecord(record.features) ? record.features : {};
  const image = stringOrUndefined(record.image);
  if (dockerfile === undefined && Object.keys(features).length === 0) {
    throw invalid(`${absolute}: nothing to build (no "build.dockerfile" and no "features")`);
  }
  if (dockerfile === undefined && image === undefined) throw invalid(`${absolute}: "features" need an "image" or a "build.dockerfile"`);
  const buildArgs: Record<string, string> = {};
  if (isRecord(build.args)) for (const [key, value] of Object.entries(build.args)) if (typeof value === 'string') buildArgs[key] = value;
  const localFeatureDirs = Object.keys(features)
    .filter((id) => id.startsWith('./') || id.startsWith('../'))
    .map((id) => resolve(folder, id));
  return {
    configPath: absolute,
    configText,
    dockerfilePath: dockerfile === undefined ? undefined : resolve(folder, dockerfile),
    contextDir: dockerfile === undefined ? undefined : resolve(folder, context),
    buildArgs,
    image: dockerfile === undefined ? image : undefined,
    localFeatureDirs,
  };
}

/**
 * Computes the cache key of a build: sha256 (hex) over {@link CACHE_KEY_VERSION}, `toolVersion`, the
 * devcontainer.json bytes, the Dockerfile bytes, every file of the build context and every file of each
 * local feature folder (relative path, type, permission bits, content or symlink target).
 * The context honours `.dockerignore` (at the context root, or `<Dockerfile>.dockerignore` next to the
 * Dockerfile, which wins as in BuildKit) except for the Dockerfile itself. Departures from what Docker sends:
 * `.git` directories are never hashed, so two clones of one commit share a key; modification times and
 * owners are not hashed. Remote features and base images are keyed by their reference text, not digest:
 * a moved tag does not invalidate a cached build.
 * @throws {InvalidError} when the Dockerfile or a local feature folder is missing.
 */
export async function computeCacheKey(plan: BuildPlan, toolVersion: string): Promise<string> {
  const hash = createHash('sha256');
  const field = (name: string, value: string | Buffer): void => {
    const bytes = typeof value === 'string' ? Buffer.from(value) : value;
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  };
  field('version', CACHE_KEY_VERSION);
  field('tool', toolVersion);
  field('config', plan.configText);
  if (plan.dockerfilePath !== undefined && plan.contextDir !== undefined) {
    const dockerfile = await readFile(plan.dockerfilePath).catch((error: unknown) => {
      throw invalid(`Dockerfile ${plan.dockerfilePath} not found: ${(error as Error).message}`);
    });
    field('dockerfile', dockerfile);
    const ignore = await readDockerignore(plan.contextDir, plan.dockerfilePath);
    const exempt = relative(plan.contextDir, plan.dockerfilePath).split(sep).join('/');
    await hashTree(plan.contextDir, 'context', (path) => path !== exempt && ignore(path), field);
  }
  for (const directory of plan.localFeatureDirs) {
    const info = await lstat(directory).catch(() => undefined);
    if (!info?.isDirectory()) throw invalid(`local feature folder ${directory} not found`);
    await hashTree(directory, `feature:${relative(dirname(plan.configPath), directory)}`, () => false, field);
  }
  return hash.digest('hex');
}

async function hashTree(
  root: string,
  label: string,
  ignored: (path: string) => boolean,
  field: (name: string, value: string | Buffer) => void,
): Promise<void> {
  const walk = async (directory: string): Promise<void> => {
    const entries = (await readdir(directory, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const absolute = join(directory, entry.name);
      const path = relative(root, absolute).split(sep).join('/');
      if (entry.isDirectory() && entry.name === '.git') continue;
      if (ignored(path)) continue;
      const info = await lstat(absolute);
      const mode = (info.mode & 0o7777).toString(8);
      if (info.isSymbolicLink()) field(`${label}:link:${path}:${mode}`, await readlink(absolute));
      else if (info.isFile())
        field(
          `${label}:file:${path}:${mode}`,
          createHash('sha256')
            .update(await readFile(absolute))
            .digest('hex'),
        );
      else if (info.isDirectory()) {
        field(`${label}:dir:${path}:${mode}`, '');
        await walk(absolute);
      }
      // sockets, fifos and devices are not sent in a build context
    }
  };
  await walk(root);
}

/**
 * Reads the ignore file of a build context and returns a predicate on context-relative paths (`/`-separated).
 * Pattern rules from docs.docker.com/build/concepts/context/#dockerignore-files: Go `filepath.Match`
 * plus `**`, `!` exceptions, last match wins, a pattern also excludes everything below a matched directory.
 */
export async function readDockerignore(contextDir: string, dockerfilePath?: string): Promise<(path: string) => boolean> {
  const candidates = [...(dockerfilePath ? [`${dockerfilePath}.dockerignore`] : []), join(contextDir, '.dockerignore')];
  for (const candidate of candidates) {
    const text = await readFile(candidate, 'utf8').catch(() => undefined);
    if (text !== undefined) return dockerignoreMatcher(text);
  }
  return () => false;
}

/** Compiles `.dockerignore` text into a predicate (see {@link readDockerignore} for the rules). */
export function dockerignoreMatcher(text: string): (path: string) => boolean {
  const rules: { negate: boolean; pattern: RegExp }[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    if (negate) line = line.slice(1).trim();
    line = line
      .split('/')
      .filter((part) => part !== '' && part !== '.')
      .join('/');
    if (line === '') continue;
    rules.push({ negate, pattern: globToRegExp(line) });
  }
  return (path: string) => {
    let ignoredPath = false;
    for (const rule of rules) {
      // A pattern matching a parent directory covers everything below it.
      const parts = path.split('/');
      const matches = parts.some((_, index) => rule.pattern.test(parts.slice(0, index + 1).join('/')));
      if (matches) ignoredPath = !rule.negate;
    }
    return ignoredPath;
  };
}

function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let index = 0; index < glob.length; index++) {
    const char = glob[index]!;
    if (char === '*' && glob[index + 1] === '*') {
      // `**/` matches zero or more directories, a trailing `**` everything.
      if (glob[index + 2] === '/') {
        source += '(?:.*/)?';
        index += 2;
      } else {
        source += '.*';
        index += 1;
      }
    } else if (char === '*') source += '[^/]*';
    else if (char === '?') source += '[^/]';
    else if (char === '[') {
      const end = glob.indexOf(']', index + 1);
      if (end < 0) source += '\\[';
      else {
        source += `[${glob
          .slice(index + 1, end)
          .replace(/^\^/, '^')
          .replace(/\\/g, '\\\\')}]`;
        index = end;
      }
    } else if (char === '\\' && index + 1 < glob.length) source += `\\${glob[++index]!}`;
    else source += char.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/**
 * Lists the images a Dockerfile's stages start from, in order, without stage names and `scratch`.
 * Handles line continuations, `--platform=` flags, `AS name` stage aliases and `$VAR`/`${VAR}`/`${VAR:-default}`
 * expansion of global `ARG`s (declared before the first FROM; `buildArgs` override their defaults), as the
 * Dockerfile reference describes (docs.docker.com/reference/dockerfile/#understand-how-arg-and-from-interact).
 * Only the default escape character `\` is supported.
 * @returns image references as written after expansion, e.g. `mcr.microsoft.com/devcontainers/base:bookworm`.
 */
export function dockerfileBaseImages(text: string, buildArgs: Record<string, string> = {}): string[] {
  const lines: string[] = [];
  let current = '';
  for (const raw of text.split(/\r?\n/)) {
    const trimmed = raw.trim();
    if (current === '' && trimmed.startsWith('#')) continue;
    if (trimmed.endsWith('\\')) {
      current += `${trimmed.slice(0, -1)} `;
      continue;
    }
    if (current !== '' && trimmed.startsWith('#')) continue; // comments inside a continued instruction
    lines.push(current + trimmed);
    current = '';
  }
  if (current !== '') lines.push(current);

  const globals: Record<string, string> = {};
  const stages = new Set<string>();
  const images: string[] = [];
  let seenFrom = false;
  for (const line of lines) {
    const match = /^(\w+)\s*(.*)$/.exec(line);
    if (!match) continue;
    const instruction = match[1]!.toUpperCase();
    const rest = match[2]!;
    if (instruction === 'ARG' && !seenFrom) {
      for (const declaration of rest.split(/\s+/).filter(Boolean)) {
        const equals = declaration.indexOf('=');
        const name = equals < 0 ? declaration : declaration.slice(0, equals);
        const value = equals < 0 ? undefined : unquote(declaration.slice(equals + 1));
        const effective = buildArgs[name] ?? value;
        if (effective !== undefined) globals[name] = effective;
      }
    } else if (instruction === 'FROM') {
      seenFrom = true;
      const words = rest.split(/\s+/).filter((word) => word !== '' && !word.startsWith('--'));
      const image = expand(words[0] ?? '', globals);
      const alias = words.length >= 3 && words[1]!.toLowerCase() === 'as' ? words[2]!.toLowerCase() : undefined;
      const name = image.toLowerCase();
      if (image !== '' && name !== 'scratch' && !stages.has(name) && !images.includes(image)) images.push(image);
      if (alias !== undefined) stages.add(alias);
    }
  }
  return images;
}

function expand(text: string, variables: Record<string, string>): string {
  return text.replace(
    /\$\{(\w+)(?::([-+])([^}]*))?\}|\$(\w+)/g,
    (_, braced: string | undefined, operator: string | undefined, word: string | undefined, bare: string | undefined) => {
      const name = (braced ?? bare)!;
      const value = variables[name];
      if (operator === '-') return value === undefined || value === '' ? (word ?? '') : value;
      if (operator === '+') return value === undefined || value === '' ? '' : (word ?? '');
      return value ?? '';
    },
  );
}

function unquote(value: string): string {
  return /^(["']).*\1$/.test(value) ? value.slice(1, -1) : value;
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function invalid(message: string): InvalidError {
  return new InvalidError(message, [], 'InvalidDevcontainerConfig');
}
