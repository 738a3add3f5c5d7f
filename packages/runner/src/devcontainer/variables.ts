// Variable substitution in devcontainer.json (`${localEnv:X}`, `${containerWorkspaceFolder}` ...),
// following https://containers.dev/implementors/json_reference/#variables-in-devcontainerjson.
import { createHash } from 'node:crypto';
import type { DevcontainerConfig } from './parse.js';

/** The variable names of the spec; `env` is the reference CLI's alias of `localEnv`. */
export type VariableName =
  | 'localEnv'
  | 'containerEnv'
  | 'localWorkspaceFolder'
  | 'containerWorkspaceFolder'
  | 'localWorkspaceFolderBasename'
  | 'containerWorkspaceFolderBasename'
  | 'devcontainerId';

/**
 * Values the variables resolve to. What "local" means for Warren: there is no user machine, so
 * `localEnv` is what the caller decides to expose (never the runner's own environment, which holds
 * its secrets) and `localWorkspaceFolder` is the repository checkout on the runner host.
 */
export interface VariableContext {
  /** Values for `${localEnv:NAME}`; a missing name resolves to its default or `""` (as the reference CLI). */
  localEnv: Readonly<Record<string, string>>;
  /** Absolute path of the repository checkout on the runner host. */
  localWorkspaceFolder: string;
  /** Workspace folder inside the container; while unknown, `${containerWorkspaceFolder*}` stays as written. */
  containerWorkspaceFolder?: string;
  /** From {@link devcontainerId}; while unknown, `${devcontainerId}` stays as written. */
  devcontainerId?: string;
  /**
   * The running container's environment for `${containerEnv:NAME}`; only known after the container
   * started, so until then the variable stays as written, to be substituted in a second pass.
   */
  containerEnv?: Readonly<Record<string, string>>;
}

const ALL: ReadonlySet<VariableName> = new Set([
  'localEnv',
  'localWorkspaceFolder',
  'containerWorkspaceFolder',
  'localWorkspaceFolderBasename',
  'containerWorkspaceFolderBasename',
]);

/**
 * Properties where `${devcontainerId}` may be used: the string properties listed in
 * https://github.com/devcontainers/spec/blob/main/docs/specs/devcontainer-id-variable.md
 * (not build-related ones, so images can be pre-built without knowing the id).
 */
const DEVCONTAINER_ID_PROPERTIES = new Set([
  'name',
  'runArgs',
  'initializeCommand',
  'onCreateCommand',
  'updateContentCommand',
  'postCreateCommand',
  'postStartCommand',
  'postAttachCommand',
  'workspaceFolder',
  'workspaceMount',
  'mounts',
  'containerEnv',
  'remoteEnv',
  'containerUser',
  'remoteUser',
  'customizations',
]);

/**
 * The variables allowed in a top-level devcontainer.json property.
 * Rule (json_reference, "Variables in devcontainer.json"): `localEnv` and the four workspace-folder
 * variables anywhere; `${containerEnv:NAME}` only in `remoteEnv` (container variables do not exist
 * yet when the container is created, so `containerEnv` values cannot use them); `${devcontainerId}`
 * only in the properties of the devcontainerId proposal.
 */
export function allowedVariables(property: string): ReadonlySet<VariableName> {
  const allowed = new Set(ALL);
  if (property === 'remoteEnv') allowed.add('containerEnv');
  if (DEVCONTAINER_ID_PROPERTIES.has(property)) allowed.add('devcontainerId');
  return allowed;
}

const KNOWN: ReadonlySet<string> = new Set([...ALL, 'containerEnv', 'devcontainerId']);

const VARIABLE = /\$\{([^}]*)\}/g;

/**
 * Substitutes `${...}` variables in every string inside `value` (objects and arrays are walked; keys
 * are not substituted; the result of a substitution is not scanned again).
 *
 * `${localEnv:NAME}` and `${localEnv:NAME:default}` (the default is everything after the second
 * colon, so it may itself contain colons; the reference CLI keeps only up to the next colon).
 * Unknown names (`${HOME}` in a shell command) and variables not in `allowed` stay as written;
 * the latter are reported through `onDisallowed`.
 *
 * @returns a copy of `value` with the variables substituted; `value` is not modified.
 */
export function substituteVariables<T>(
  value: T,
  context: VariableContext,
  allowed: ReadonlySet<VariableName> = ALL,
  onDisallowed?: (variable: string) => void,
): T {
  const replace = (text: string): string =>
    text.replace(VARIABLE, (match, body: string) => {
      const [rawName = '', ...args] = body.split(':');
      const name = rawName === 'env' ? 'localEnv' : rawName;
      if (KNOWN.has(name) && !allowed.has(name as VariableName)) {
        onDisallowed?.(match);
        return match;
      }
      return resolveVariable(name, args, context) ?? match;
    });
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') return replace(node);
    if (Array.isArray(node)) return node.map(walk);
    if (node !== null && typeof node === 'object') {
      const result: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(node)) {
        Object.defineProperty(result, key, { value: walk(child), enumerable: true, writable: true, configurable: true });
      }
      return result;
    }
    return node;
  };
  return walk(value) as T;
}

/** Returns the value of one variable, or `undefined` when it is unknown or not known yet. */
function resolveVariable(name: string, args: string[], context: VariableContext): string | undefined {
  const basename = (folder: string | undefined) =>
    folder === undefined ? undefined : (folder.replace(/\/+$/, '').split('/').at(-1) ?? '');
  switch (name) {
    case 'localEnv':
      return lookup(context.localEnv, args);
    case 'containerEnv':
      return context.containerEnv === undefined ? undefined : lookup(context.containerEnv, args);
    case 'localWorkspaceFolder':
      return context.localWorkspaceFolder;
    case 'localWorkspaceFolderBasename':
      return basename(context.localWorkspaceFolder);
    case 'containerWorkspaceFolder':
      return context.containerWorkspaceFolder;
    case 'containerWorkspaceFolderBasename':
      return basename(context.containerWorkspaceFolder);
    case 'devcontainerId':
      return context.devcontainerId;
    default:
      return undefined;
  }
}

function lookup(environment: Readonly<Record<string, string>>, args: string[]): string {
  const [variable, ...rest] = args;
  if (variable === undefined || variable === '') return '';
  const found = Object.hasOwn(environment, variable) ? environment[variable] : undefined;
  return found ?? rest.join(':');
}

/**
 * Substitutes variables in each property of a devcontainer.json with the variables allowed there
 * (see {@link allowedVariables}).
 * @returns the substituted config and one warning per variable used where the spec does not allow it
 *   (such a variable stays as written).
 */
export function substituteConfig(
  config: DevcontainerConfig,
  context: VariableContext,
  source: string,
): { config: DevcontainerConfig; warnings: string[] } {
  const warnings: string[] = [];
  const result: Record<string, unknown> = {};
  for (const [property, value] of Object.entries(config)) {
    result[property] = substituteVariables(value, context, allowedVariables(property), (variable) =>
      warnings.push(`${source}: ${variable} cannot be used in "${property}" and was left as written`),
    );
  }
  return { config: result, warnings };
}

/** The id label Warren derives `${devcontainerId}` from. */
export const DEVCONTAINER_ID_LABEL = 'dev.warren.environment.id';

/**
 * Computes `${devcontainerId}` for an environment: stable for the environment's lifetime (across
 * stop/start and rebuilds), unique per environment, alphanumeric.
 *
 * Derivation, as the reference CLI's label-based implementation
 * (https://github.com/devcontainers/spec/blob/main/docs/specs/devcontainer-id-variable.md): the id
 * labels `{"dev.warren.environment.id": environmentId}` are serialised as JSON with sorted keys, hashed
 * with SHA-256, and the 256-bit hash is written in base 32 (digits `0-9a-v`), left-padded with `0`
 * to 52 characters.
 *
 * @param environmentId the Environment's `metadata.id`.
 * @returns a 52-character string of `[0-9a-v]`.
 */
export function devcontainerId(environmentId: string): string {
  const labels: Record<string, string> = { [DEVCONTAINER_ID_LABEL]: environmentId };
  const sorted = Object.fromEntries(
    Object.keys(labels)
      .sort()
      .map((key) => [key, labels[key]]),
  );
  const hash = createHash('sha256').update(JSON.stringify(sorted), 'utf8').digest('hex');
  return BigInt(`0x${hash}`).toString(32).padStart(52, '0');
}
