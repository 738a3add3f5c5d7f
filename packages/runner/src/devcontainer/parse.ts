// Parses devcontainer.json (JSONC) and devcontainer.metadata image labels into the properties Warren
// honours, and lists the ones it cannot honour instead of dropping them.
import { readFile } from 'node:fs/promises';
import { type Node as JsonNode, type ParseError, findNodeAtLocation, parseTree, printParseErrorCode } from 'jsonc-parser';
import { z } from 'zod';
import { type ErrorCause, InvalidError } from '@warren/base';

/** The wire reason of every error about a repository's devcontainer.json. */
export const INVALID_DEVCONTAINER_CONFIG = 'InvalidDevcontainerConfig';

const stringRecord = z.record(z.string(), z.string());

/** `onCreateCommand` & co.: a shell string, an argv array, or named commands run in parallel. */
const lifecycleCommand = z.union(
  [
    z.string(),
    z.array(z.string()),
    z.record(z.string(), z.union([z.string(), z.array(z.string())], { error: 'expected a string or an array of strings' })),
  ],
  { error: 'expected a command string, an array of strings, or an object of named commands' },
);

const forwardPort = z.union(
  [z.number().int().min(1).max(65535), z.string().regex(/^[A-Za-z0-9_.-]+:\d{1,5}$/, 'expected a "host:port" string')],
  { error: 'expected a port number or a "host:port" string' },
);

const portAttributes = z.looseObject({
  label: z.string().optional(),
  protocol: z.enum(['http', 'https']).optional(),
  onAutoForward: z.enum(['notify', 'openBrowser', 'openBrowserOnce', 'openPreview', 'silent', 'ignore']).optional(),
  requireLocalPort: z.boolean().optional(),
  elevateIfNeeded: z.boolean().optional(),
});

const lifecycleName = z.enum([
  'initializeCommand',
  'onCreateCommand',
  'updateContentCommand',
  'postCreateCommand',
  'postStartCommand',
  'postAttachCommand',
]);

/** Schemas of the properties Warren honours, one per property so each error names its property. */
const honouredProperties = {
  name: z.string(),
  image: z.string().min(1),
  build: z.looseObject({
    dockerfile: z.string().min(1).optional(),
    context: z.string().optional(),
    args: stringRecord.optional(),
    target: z.string().optional(),
    cacheFrom: z.union([z.string(), z.array(z.string())]).optional(),
    options: z.array(z.string()).optional(),
  }),
  /** Legacy spelling of `build.dockerfile`. */
  dockerFile: z.string().min(1),
  /** Legacy spelling of `build.context`. */
  context: z.string(),
  features: z.record(
    z.string(),
    z.union([z.looseObject({}), z.string(), z.boolean()], { error: 'expected an options object, a version string or a boolean' }),
  ),
  overrideFeatureInstallOrder: z.array(z.string()),
  containerEnv: stringRecord,
  remoteEnv: z.record(z.string(), z.union([z.string(), z.null()], { error: 'expected a string, or null to unset the variable' })),
  containerUser: z.string().min(1),
  remoteUser: z.string().min(1),
  workspaceFolder: z.string().min(1),
  forwardPorts: z.array(forwardPort),
  portsAttributes: z.record(z.string(), portAttributes),
  otherPortsAttributes: portAttributes,
  overrideCommand: z.boolean(),
  onCreateCommand: lifecycleCommand,
  updateContentCommand: lifecycleCommand,
  postCreateCommand: lifecycleCommand,
  postStartCommand: lifecycleCommand,
  postAttachCommand: lifecycleCommand,
  shutdownAction: z.enum(['none', 'stopContainer', 'stopCompose']),
  waitFor: lifecycleName,
  userEnvProbe: z.enum(['none', 'loginShell', 'loginInteractiveShell', 'interactiveShell']),
  updateRemoteUserUID: z.boolean(),
  hostRequirements: z.looseObject({
    cpus: z.number().int().min(1).optional(),
    memory: z
      .string()
      .regex(/^\d+([tgmk]b)?$/i, 'expected a size such as "8gb"')
      .optional(),
    storage: z
      .string()
      .regex(/^\d+([tgmk]b)?$/i, 'expected a size such as "32gb"')
      .optional(),
    gpu: z
      .union([z.boolean(), z.literal('optional'), z.looseObject({ cores: z.number().optional(), memory: z.string().optional() })])
      .optional(),
  }),
} as const;

type HonouredProperties = typeof honouredProperties;

/**
 * The validated subset of a devcontainer.json (or of one image-metadata entry) that Warren honours.
 * Shapes follow https://containers.dev/implementors/json_reference/; every property is optional.
 */
export type DevcontainerConfig = { -readonly [K in keyof HonouredProperties]?: z.infer<HonouredProperties[K]> };

/** A lifecycle command as written: shell string, argv array, or named commands (run in parallel). */
export type LifecycleCommandInput = z.infer<typeof lifecycleCommand>;

/** Attributes of a forwarded port (`portsAttributes` values), unknown keys kept. */
export type PortAttributes = z.infer<typeof portAttributes>;

/** Requirements on the host (`hostRequirements`): `cpus` count, `memory`/`storage` like `"8gb"`. */
export type HostRequirements = z.infer<HonouredProperties['hostRequirements']>;

/** A property Warren cannot honour, reported to the user as a condition instead of being dropped. */
export interface UnsupportedProperty {
  /** Property name, e.g. `mounts`, or `runArgs[2]` for one element. */
  property: string;
  /** Why it is not honoured and what to do instead. */
  message: string;
  /** Where it came from: the config's repository-relative path or `image metadata[<index>]`. */
  source: string;
  /** The value as written, so a later step may still honour part of it (e.g. `capAdd`). */
  value: unknown;
}

/**
 * Properties of the spec that Warren cannot honour and why. Sources: json_reference "Image or
 * Dockerfile specific properties", "Docker Compose specific properties", "General properties".
 */
const UNSUPPORTED_PROPERTIES: Record<string, string> = {
  dockerComposeFile: 'Docker Compose configurations are not supported; use "image" or "build" with a single container',
  service: 'Docker Compose configurations are not supported',
  runServices: 'Docker Compose configurations are not supported',
  privileged: 'privileged containers are not supported; environments run in a user namespace',
  capAdd: "extra capabilities are not supported; environments get Docker's default capability set",
  securityOpt: 'security options are not supported',
  mounts: 'extra mounts are not supported; keep data in the workspace folder, which is preserved',
  runArgs: 'docker run arguments are not supported; Warren does not run containers with Docker',
  appPort: 'appPort is not supported; use "forwardPorts"',
  initializeCommand:
    'initializeCommand runs on the local machine, which does not exist for a cloud environment; move it to onCreateCommand',
  init: 'an init process ("init": true) is not supported',
  workspaceMount: 'workspaceMount is not supported; the repository is always mounted at the workspace folder',
  entrypoint: 'image entrypoints from metadata are not run',
  gpu: 'GPUs are not supported',
};

/** Properties that are accepted and ignored without a warning (they are for tools, not for Warren). */
const IGNORED_PROPERTIES = new Set(['$schema', 'customizations', 'id', 'extensions', 'settings', 'devPort']);

/** Result of parsing one devcontainer.json or one image-metadata entry. */
export interface ParsedDevcontainerConfig {
  /** Repository-relative path of the file (for messages), or `image metadata[<index>]`. */
  source: string;
  /** The honoured properties, validated. */
  config: DevcontainerConfig;
  /** Properties present that Warren cannot honour. */
  unsupported: UnsupportedProperty[];
  /** Unknown properties and other things worth telling the user; never fatal. */
  warnings: string[];
}

/**
 * Parses the text of a devcontainer.json: JSONC (comments and trailing commas allowed, a UTF-8 BOM
 * ignored), then validates the honoured properties.
 *
 * Unsupported properties are returned in `unsupported`; unknown ones in `warnings`; `customizations`
 * is ignored silently. `runArgs` that request host networking are reported as their own entry.
 *
 * @param text the file's content.
 * @param source the file's path as shown to the user, e.g. `.devcontainer/devcontainer.json`.
 * @throws {InvalidError} reason `InvalidDevcontainerConfig`: on a syntax error, the message names
 *   `source:line:column` (1-based) and the problem; on wrong types, one cause per property with its
 *   JSON path (`field`) and `line:column`; when the top level is not an object.
 */
export function parseDevcontainerConfig(text: string, source: string): ParsedDevcontainerConfig {
  const content = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const errors: ParseError[] = [];
  const tree = parseTree(content, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0) {
    const causes = errors.map((error) => {
      const { line, column } = lineColumn(content, error.offset);
      return { field: '', message: `${source}:${line}:${column}: ${describeParseError(error.error)}` };
    });
    throw new InvalidError(
      `${source} is not valid JSON: ${causes.map((cause) => cause.message).join('; ')}`,
      causes,
      INVALID_DEVCONTAINER_CONFIG,
    );
  }
  if (!tree || tree.type !== 'object') {
    throw new InvalidError(
      `${source}: the top level must be a JSON object`,
      [{ field: '', message: 'expected an object' }],
      INVALID_DEVCONTAINER_CONFIG,
    );
  }
  const value = nodeValue(tree) as Record<string, unknown>;
  const { parsed, issues } = validateEntry(value, source);
  if (issues.length > 0) {
    const causes: ErrorCause[] = issues.map((issue) => {
      const node = findNodeAtLocation(tree, issue.path);
      const { line, column } = lineColumn(content, node?.offset ?? 0);
      return { field: formatPath(issue.path), message: `${source}:${line}:${column}: ${formatPath(issue.path)}: ${issue.message}` };
    });
    throw new InvalidError(
      `${source} has ${causes.length === 1 ? 'an invalid property' : `${causes.length} invalid properties`}: ${causes.map((cause) => cause.message).join('; ')}`,
      causes,
      INVALID_DEVCONTAINER_CONFIG,
    );
  }
  return parsed;
}

/**
 * Reads and parses the devcontainer.json at `file` (see {@link parseDevcontainerConfig}).
 * @param file absolute path on the runner host.
 * @param source the path shown in messages, normally the repository-relative path.
 * @throws {InvalidError} reason `InvalidDevcontainerConfig` when the file cannot be read or is invalid.
 */
export async function readDevcontainerConfig(file: string, source: string): Promise<ParsedDevcontainerConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const message = `${source} cannot be read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`;
    throw Object.assign(new InvalidError(message, [{ field: '', message }], INVALID_DEVCONTAINER_CONFIG), { cause: error });
  }
  return parseDevcontainerConfig(text, source);
}

/**
 * Parses the `devcontainer.metadata` label of an image: a JSON array of entries or a single object
 * (https://containers.dev/implementors/spec/#image-metadata).
 *
 * Image metadata is written by the image's author, not the user, so problems never fail: invalid JSON
 * drops the label, an invalid property is dropped from its entry, and each is reported in `warnings`.
 *
 * @param label the label's value; `undefined` or empty means no metadata.
 * @returns one parsed entry per array element, in label order, plus label-level warnings.
 */
export function parseImageMetadata(label: string | undefined): { entries: ParsedDevcontainerConfig[]; warnings: string[] } {
  if (label === undefined || label.trim() === '') return { entries: [], warnings: [] };
  let value: unknown;
  try {
    value = JSON.parse(label);
  } catch (error) {
    return {
      entries: [],
      warnings: [`the image's devcontainer.metadata label is not valid JSON and was ignored: ${(error as Error).message}`],
    };
  }
  const list = Array.isArray(value) ? value : [value];
  const entries: ParsedDevcontainerConfig[] = [];
  const warnings: string[] = [];
  list.forEach((entry, index) => {
    const source = `image metadata[${index}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      warnings.push(`${source} is not an object and was ignored`);
      return;
    }
    const { parsed, issues } = validateEntry(entry as Record<string, unknown>, source);
    for (const issue of issues) {
      parsed.warnings.push(`${source}: ${formatPath(issue.path)}: ${issue.message}; the property was ignored`);
    }
    entries.push(parsed);
  });
  return { entries, warnings };
}

interface Issue {
  path: (string | number)[];
  message: string;
}

/** Validates each property on its own so one bad property does not hide the others. */
function validateEntry(value: Record<string, unknown>, source: string): { parsed: ParsedDevcontainerConfig; issues: Issue[] } {
  const config: Record<string, unknown> = {};
  const unsupported: UnsupportedProperty[] = [];
  const warnings: string[] = [];
  const issues: Issue[] = [];
  for (const [key, propertyValue] of Object.entries(value)) {
    const schema = Object.hasOwn(honouredProperties, key) ? (honouredProperties as Record<string, z.ZodType>)[key] : undefined;
    if (schema) {
      const result = schema.safeParse(propertyValue);
      if (result.success) config[key] = result.data;
      else for (const issue of result.error.issues) issues.push({ path: [key, ...issue.path.map(pathKey)], message: issue.message });
      continue;
    }
    const why = Object.hasOwn(UNSUPPORTED_PROPERTIES, key) ? UNSUPPORTED_PROPERTIES[key] : undefined;
    if (why !== undefined) {
      if (isEffectivelyUnset(key, propertyValue)) continue;
      unsupported.push({ property: key, message: why, source, value: propertyValue });
      if (key === 'runArgs' && Array.isArray(propertyValue)) unsupported.push(...hostNetworking(propertyValue, source));
      continue;
    }
    if (IGNORED_PROPERTIES.has(key)) continue;
    warnings.push(`${source}: unknown property "${key}" was ignored`);
  }
  return { parsed: { source, config, unsupported, warnings }, issues };
}

/** `"init": false`, `"privileged": false`, `[]` and `{}` ask for nothing, so they are not reported. */
function isEffectivelyUnset(key: string, value: unknown): boolean {
  if (value === null || value === false) return true;
  if (Array.isArray(value) && value.length === 0) return true;
  if (key !== 'init' && typeof value === 'object' && Object.keys(value).length === 0) return true;
  return false;
}

/** `--network=host` / `--net host` in runArgs: listed separately because it breaks isolation. */
function hostNetworking(runArgs: unknown[], source: string): UnsupportedProperty[] {
  const found: UnsupportedProperty[] = [];
  runArgs.forEach((arg, index) => {
    const next = runArgs[index + 1];
    const isHost =
      (typeof arg === 'string' && /^--(network|net)=host$/.test(arg)) || ((arg === '--network' || arg === '--net') && next === 'host');
    if (isHost) {
      found.push({
        property: `runArgs[${index}]`,
        message: 'host networking is not supported; each environment has its own network namespace',
        source,
        value: typeof arg === 'string' && arg.includes('=') ? arg : `${String(arg)} host`,
      });
    }
  });
  return found;
}

function pathKey(key: PropertyKey): string | number {
  return typeof key === 'number' ? key : String(key);
}

/** Formats a JSON path like `forwardPorts[1]` or `build.args.FOO`. */
function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function describeParseError(code: number): string {
  const name = printParseErrorCode(code);
  return name.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

/** 1-based line and column (in UTF-16 code units) of `offset` in `text`. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let index = 0; index < offset && index < text.length; index++) {
    if (text.charCodeAt(index) === 10) {
      line++;
      lineStart = index + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** Converts a jsonc-parser tree to a plain value; for duplicate keys the last wins, as in JSON.parse. */
function nodeValue(node: JsonNode): unknown {
  if (node.type === 'object') {
    const result: Record<string, unknown> = {};
    for (const property of node.children ?? []) {
      const [keyNode, valueNode] = property.children ?? [];
      // defineProperty, so a "__proto__" key is an ordinary property and cannot change the prototype
      if (keyNode && valueNode) {
        Object.defineProperty(result, keyNode.value as string, {
          value: nodeValue(valueNode),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
    }
    return result;
  }
  if (node.type === 'array') return (node.children ?? []).map(nodeValue);
  return node.value as unknown;
}
