// Merges an image's devcontainer.metadata entries with the repository's devcontainer.json into the
// one resolved configuration the environment reconciler applies.
// Rules: https://containers.dev/implementors/spec/#merge-logic
import path from 'node:path';
import { InvalidError } from '@warren/base';
import {
  type DevcontainerConfig,
  type HostRequirements,
  INVALID_DEVCONTAINER_CONFIG,
  type LifecycleCommandInput,
  type ParsedDevcontainerConfig,
  type PortAttributes,
  type UnsupportedProperty,
  parseImageMetadata,
} from './parse.js';
import { type VariableContext, devcontainerId as computeDevcontainerId, substituteConfig, substituteVariables } from './variables.js';

/** One command of a lifecycle hook. */
export type LifecycleCommand =
  /** String form: run by `/bin/sh -c <shell>`. */
  | { kind: 'shell'; name?: string; shell: string }
  /** Array form: `argv[0]` executed directly with `argv[1..]`, no shell. */
  | { kind: 'exec'; name?: string; argv: string[] };

/**
 * One hook value from one source (an image-metadata entry or devcontainer.json).
 * Steps of a hook run one after another in array order, stopping at the first failure. Within a step,
 * `parallel: true` (the object form `{"name": command}`) means start all commands at once and wait
 * for all; a step with `parallel: false` has exactly one command.
 * Source: json_reference "Lifecycle scripts" (object form runs in parallel) and spec "merge logic"
 * (hooks from every entry run, image metadata first).
 */
export interface LifecycleStep {
  /** `image metadata[<index>]` or the config's repository-relative path; for logs and messages. */
  source: string;
  parallel: boolean;
  commands: LifecycleCommand[];
}

/** All lifecycle hooks Warren runs, each as ordered steps. `initializeCommand` is never run. */
export interface ResolvedLifecycle {
  /** Once, after the container is first created. */
  onCreate: LifecycleStep[];
  /** Once after onCreate (and again when content is updated, e.g. a prebuild refresh). */
  updateContent: LifecycleStep[];
  /** Once, after updateContent, when the environment is first assigned to a user. */
  postCreate: LifecycleStep[];
  /** On every start of the container. */
  postStart: LifecycleStep[];
  /** Each time a tool attaches (SSH session or terminal). */
  postAttach: LifecycleStep[];
}

/** The hook a client waits for before considering the environment ready (`waitFor`). */
export type WaitFor = NonNullable<DevcontainerConfig['waitFor']>;

/** What the builder backend needs when the config requires an image build (`build`, `dockerFile`, `features`). */
export interface DevcontainerBuild {
  /** Repository-relative path of the devcontainer.json, for `devcontainer build --config`. */
  configFile: string;
  /** Repository-relative Dockerfile path, when Dockerfile-based. */
  dockerfile?: string;
  /** Repository-relative build context (`.` = repository root), when Dockerfile-based. */
  context?: string;
  /** Base image, when image-based with features. */
  image?: string;
  args: Record<string, string>;
  target?: string;
  /** Feature id → options, as written. */
  features: Record<string, unknown>;
  overrideFeatureInstallOrder?: string[];
}

/** Merged `hostRequirements`: the maximum of every entry (spec merge logic), sizes in bytes. */
export interface ResolvedHostRequirements {
  cpus?: number;
  memoryBytes?: number;
  storageBytes?: number;
  gpu?: boolean | 'optional';
}

/** Properties Warren lists as unsupported, merged anyway so the reconciler may honour part of them. */
export interface ResolvedRuntimeOptions {
  /** Union of `capAdd` of every entry. */
  capAdd: string[];
  /** Union of `securityOpt` of every entry. */
  securityOpt: string[];
  /** True when any entry sets `init: true`. */
  init: boolean;
  /** True when any entry sets `privileged: true`. */
  privileged: boolean;
}

/** The configuration the environment reconciler applies; every default already filled in. */
export interface ResolvedDevcontainer {
  name?: string;
  /** Image to run; `undefined` only while a required build has not produced an image yet. */
  image?: string;
  /** Set when the config needs an image build; see {@link DevcontainerBuild}. */
  build?: DevcontainerBuild;
  /** Repository-relative path of the devcontainer.json used, `undefined` when the repository has none. */
  configFile?: string;
  /** Environment of the container's processes; per variable last wins. */
  containerEnv: Record<string, string>;
  /**
   * Environment of tool processes (shells, lifecycle commands); `null` unsets a variable.
   * May still contain `${containerEnv:NAME}`: substitute it with {@link resolveRemoteEnv} once the
   * container's environment is known.
   */
  remoteEnv: Record<string, string | null>;
  /** User of the container's processes: `containerUser`, else the image's `User`, else `root`. */
  containerUser: string;
  /** User of tool processes: `remoteUser`, else {@link containerUser}. */
  remoteUser: string;
  /** Absolute path inside the container; default `/workspaces/<repository name>`. */
  workspaceFolder: string;
  /** Ports in the environment to forward, union of every entry, in first-seen order. */
  forwardPorts: number[];
  /** Port (or range / pattern, as written) → attributes; per key last wins. */
  portsAttributes: Record<string, PortAttributes>;
  otherPortsAttributes?: PortAttributes;
  /** Replace the image's command with a keep-alive process; default true (image and Dockerfile configs). */
  overrideCommand: boolean;
  lifecycle: ResolvedLifecycle;
  /** Default `updateContentCommand` (json_reference). */
  waitFor: WaitFor;
  /** Default `loginInteractiveShell` (json_reference). */
  userEnvProbe: NonNullable<DevcontainerConfig['userEnvProbe']>;
  /** Default true on Linux (json_reference). */
  updateRemoteUserUID: boolean;
  /** Default `stopContainer` (json_reference). */
  shutdownAction: NonNullable<DevcontainerConfig['shutdownAction']>;
  hostRequirements?: ResolvedHostRequirements;
  /** The value of `${devcontainerId}`; see {@link computeDevcontainerId}. */
  devcontainerId: string;
  runtime: ResolvedRuntimeOptions;
  /** Everything Warren cannot honour, from the config and from image metadata; for a condition. */
  unsupported: UnsupportedProperty[];
  /** Non-fatal findings (unknown properties, ignored metadata, disallowed variables). */
  warnings: string[];
}

/** Input of {@link resolveDevcontainer}. */
export interface ResolveDevcontainerInput {
  /** The repository's parsed devcontainer.json; `undefined` when it has none. */
  config?: ParsedDevcontainerConfig;
  /** Image used when the repository has no devcontainer.json (runner configuration). */
  defaultImage: string;
  /** The image actually used, once known (pulled or built). */
  image?: {
    /** Reference of the pulled or built image; overrides `config.image`. */
    reference?: string;
    /** Value of its `devcontainer.metadata` label. */
    metadataLabel?: string;
    /** Its OCI config `User`, e.g. `vscode` or `1000:1000`. */
    user?: string;
    /**
     * True when the label was written by a devcontainer build of this same config, whose last entry
     * is the config itself (as `devcontainer build` does); that entry is then replaced by the
     * config so its lifecycle commands do not run twice.
     */
    metadataIncludesConfig?: boolean;
  };
  /** Absolute path of the repository checkout on the runner host (`${localWorkspaceFolder}`). */
  repositoryDir: string;
  /** Repository name for the default workspace folder, e.g. `repo` for `.../org/repo.git`. */
  repositoryName: string;
  /** The Environment's id, for `${devcontainerId}`. */
  environmentId: string;
  /** Values for `${localEnv:NAME}`; see {@link VariableContext.localEnv}. Default none. */
  localEnv?: Readonly<Record<string, string>>;
}

/**
 * Resolves the configuration of an environment: image-metadata entries first, devcontainer.json last,
 * merged by the spec's merge logic (https://containers.dev/implementors/spec/#merge-logic):
 * scalars last wins; `containerEnv`/`remoteEnv`/`portsAttributes` per key last wins; lifecycle hooks
 * from every entry, in order; `forwardPorts`, `capAdd`, `securityOpt` union; `init`/`privileged` true
 * if any; `hostRequirements` maximum. Variables are substituted per entry first
 * (`${containerEnv:*}` in remoteEnv is left for {@link resolveRemoteEnv}).
 *
 * @throws {InvalidError} reason `InvalidDevcontainerConfig` when the config has neither an image nor a
 *   Dockerfile (for example a Docker Compose config), or a build path leaves the repository.
 */
export function resolveDevcontainer(input: ResolveDevcontainerInput): ResolvedDevcontainer {
  const warnings: string[] = [];
  const metadata = parseImageMetadata(input.image?.metadataLabel);
  warnings.push(...metadata.warnings);
  let metadataEntries = metadata.entries;
  if (input.config && input.image?.metadataIncludesConfig && metadataEntries.length > 0) metadataEntries = metadataEntries.slice(0, -1);
  const entries = input.config ? [...metadataEntries, input.config] : metadataEntries;
  for (const entry of entries) warnings.push(...entry.warnings);

  const id = computeDevcontainerId(input.environmentId);
  const localContext: VariableContext = {
    localEnv: input.localEnv ?? {},
    localWorkspaceFolder: input.repositoryDir,
    devcontainerId: id,
  };
  // workspaceFolder is resolved first: ${containerWorkspaceFolder} elsewhere refers to it.
  const writtenFolder = last(entries, (entry) => entry.config.workspaceFolder);
  const workspaceFolder = writtenFolder
    ? normalizeFolder(substituteVariables(writtenFolder, localContext))
    : `/workspaces/${input.repositoryName}`;
  if (!workspaceFolder.startsWith('/')) {
    throw invalid(input.config?.source ?? 'image metadata', `workspaceFolder "${workspaceFolder}" must be an absolute path`);
  }
  const context: VariableContext = { ...localContext, containerWorkspaceFolder: workspaceFolder };
  const configs = entries.map((entry) => {
    const substituted = substituteConfig(entry.config, context, entry.source);
    warnings.push(...substituted.warnings);
    return { source: entry.source, config: substituted.config };
  });

  const unsupported = entries.flatMap((entry) => entry.unsupported);
  const forwardPorts: number[] = [];
  for (const { source, config } of configs) {
    (config.forwardPorts ?? []).forEach((port, index) => {
      const parsed = parseForwardPort(port);
      if (parsed === undefined) {
        unsupported.push({
          property: `forwardPorts[${index}]`,
          message: `"${String(port)}" forwards a port of another host (a Docker Compose service); only ports of the environment are forwarded`,
          source,
          value: port,
        });
      } else if (!forwardPorts.includes(parsed)) {
        forwardPorts.push(parsed);
      }
    });
  }

  const scalar = <K extends keyof DevcontainerConfig>(key: K): DevcontainerConfig[K] | undefined =>
    last(configs, (entry) => entry.config[key]);
  const perKey = <V>(pick: (config: DevcontainerConfig) => Record<string, V> | undefined): Record<string, V> => {
    const result: Record<string, V> = {};
    for (const { config } of configs) Object.assign(result, pick(config) ?? {});
    return result;
  };

  const config = input.config ? configs.at(-1)!.config : undefined;
  const build = config && input.config ? buildOf(config, input.config.source) : undefined;
  const image = input.image?.reference ?? config?.image ?? (input.config ? undefined : input.defaultImage);
  if (input.config && image === undefined && build === undefined) {
    const compose = input.config.unsupported.some((entry) => entry.property === 'dockerComposeFile');
    throw invalid(
      input.config.source,
      compose
        ? 'Docker Compose configurations are not supported; set "image" or "build.dockerfile" for a single container'
        : 'it sets neither "image" nor "build.dockerfile"; set one of them',
    );
  }

  const imageUser = input.image?.user?.trim() || undefined;
  const containerUser = scalar('containerUser') ?? imageUser ?? 'root';
  const runtime = runtimeOptions(unsupported);
  const hostRequirements = mergeHostRequirements(
    configs.map((entry) => entry.config.hostRequirements),
    warnings,
  );

  return {
    ...(scalar('name') !== undefined ? { name: scalar('name') } : {}),
    ...(image !== undefined ? { image } : {}),
    ...(build ? { build } : {}),
    ...(input.config ? { configFile: input.config.source } : {}),
    containerEnv: perKey((c) => c.containerEnv),
    remoteEnv: perKey((c) => c.remoteEnv),
    containerUser,
    remoteUser: scalar('remoteUser') ?? containerUser,
    workspaceFolder,
    forwardPorts,
    portsAttributes: perKey((c) => c.portsAttributes),
    ...(scalar('otherPortsAttributes') ? { otherPortsAttributes: scalar('otherPortsAttributes') } : {}),
    overrideCommand: scalar('overrideCommand') ?? true,
    lifecycle: {
      onCreate: steps(configs, 'onCreateCommand'),
      updateContent: steps(configs, 'updateContentCommand'),
      postCreate: steps(configs, 'postCreateCommand'),
      postStart: steps(configs, 'postStartCommand'),
      postAttach: steps(configs, 'postAttachCommand'),
    },
    waitFor: scalar('waitFor') ?? 'updateContentCommand',
    userEnvProbe: scalar('userEnvProbe') ?? 'loginInteractiveShell',
    updateRemoteUserUID: scalar('updateRemoteUserUID') ?? true,
    shutdownAction: scalar('shutdownAction') ?? 'stopContainer',
    ...(hostRequirements ? { hostRequirements } : {}),
    devcontainerId: id,
    runtime,
    unsupported,
    warnings,
  };
}

/**
 * Substitutes `${containerEnv:NAME}` in a resolved `remoteEnv` once the container runs
 * (json_reference: remoteEnv may refer to the container's variables, e.g. to extend `PATH`).
 * @param containerEnvironment the environment of the container's main process, as `NAME → value`.
 * @returns a new map; `null` values (unset) are kept.
 */
export function resolveRemoteEnv(
  remoteEnv: Readonly<Record<string, string | null>>,
  containerEnvironment: Readonly<Record<string, string>>,
): Record<string, string | null> {
  return substituteVariables(
    { ...remoteEnv },
    { localEnv: {}, localWorkspaceFolder: '', containerEnv: containerEnvironment },
    new Set(['containerEnv']),
  );
}

type Hook = 'onCreateCommand' | 'updateContentCommand' | 'postCreateCommand' | 'postStartCommand' | 'postAttachCommand';

function steps(configs: { source: string; config: DevcontainerConfig }[], hook: Hook): LifecycleStep[] {
  const result: LifecycleStep[] = [];
  for (const { source, config } of configs) {
    const step = toStep(config[hook], source);
    if (step) result.push(step);
  }
  return result;
}

/** Converts one written hook value to a step; empty commands (`""`, `[]`, `{}`) give none. */
function toStep(value: LifecycleCommandInput | undefined, source: string): LifecycleStep | undefined {
  if (value === undefined) return undefined;
  const command = (written: string | string[], name?: string): LifecycleCommand | undefined => {
    const named = name === undefined ? {} : { name };
    if (typeof written === 'string') return written.trim() === '' ? undefined : { kind: 'shell', ...named, shell: written };
    return written.length === 0 ? undefined : { kind: 'exec', ...named, argv: [...written] };
  };
  if (typeof value === 'string' || Array.isArray(value)) {
    const single = command(value);
    return single ? { source, parallel: false, commands: [single] } : undefined;
  }
  const commands = Object.entries(value)
    .map(([name, written]) => command(written, name))
    .filter((entry): entry is LifecycleCommand => entry !== undefined);
  return commands.length === 0 ? undefined : { source, parallel: true, commands };
}

/** `3000` → 3000; `"localhost:3000"` → 3000; another host → `undefined`. */
function parseForwardPort(port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  const [host = '', number = ''] = port.split(':');
  const value = Number(number);
  if (!['localhost', '127.0.0.1'].includes(host.toLowerCase()) || !Number.isInteger(value) || value < 1 || value > 65535) return undefined;
  return value;
}

/** Build inputs, with paths resolved relative to the devcontainer.json as json_reference says. */
function buildOf(config: DevcontainerConfig, configFile: string): DevcontainerBuild | undefined {
  const dockerfile = config.build?.dockerfile ?? config.dockerFile;
  const features = config.features ?? {};
  if (dockerfile === undefined && Object.keys(features).length === 0) return undefined;
  const configDir = path.posix.dirname(configFile);
  const inside = (written: string, what: string): string => {
    const resolved = path.posix.normalize(path.posix.join(configDir, written));
    if (path.posix.isAbsolute(written) || resolved === '..' || resolved.startsWith('../')) {
      throw invalid(configFile, `${what} "${written}" points outside the repository`);
    }
    return resolved;
  };
  return {
    configFile,
    ...(dockerfile !== undefined
      ? {
          dockerfile: inside(dockerfile, 'build.dockerfile'),
          context: inside(config.build?.context ?? config.context ?? '.', 'build.context'),
        }
      : {}),
    ...(dockerfile === undefined && config.image !== undefined ? { image: config.image } : {}),
    args: { ...(config.build?.args ?? {}) },
    ...(config.build?.target !== undefined ? { target: config.build.target } : {}),
    features,
    ...(config.overrideFeatureInstallOrder ? { overrideFeatureInstallOrder: config.overrideFeatureInstallOrder } : {}),
  };
}

function runtimeOptions(unsupported: UnsupportedProperty[]): ResolvedRuntimeOptions {
  const union = (property: string): string[] => {
    const values = unsupported
      .filter((entry) => entry.property === property && Array.isArray(entry.value))
      .flatMap((entry) => (entry.value as unknown[]).filter((item): item is string => typeof item === 'string'));
    return [...new Set(values)];
  };
  const any = (property: string) => unsupported.some((entry) => entry.property === property && entry.value === true);
  return { capAdd: union('capAdd'), securityOpt: union('securityOpt'), init: any('init'), privileged: any('privileged') };
}

const SIZE_UNITS: Record<string, number> = { '': 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** Parses `"8gb"` (binary units, as the reference CLI) to bytes. */
function sizeBytes(size: string | undefined): number | undefined {
  const match = size === undefined ? null : /^(\d+)([tgmk]b)?$/i.exec(size);
  if (!match) return undefined;
  return Number(match[1]) * (SIZE_UNITS[(match[2] ?? '').toLowerCase()] ?? 1);
}

function mergeHostRequirements(all: (HostRequirements | undefined)[], warnings: string[]): ResolvedHostRequirements | undefined {
  const present = all.filter((entry): entry is HostRequirements => entry !== undefined);
  if (present.length === 0) return undefined;
  const result: ResolvedHostRequirements = {};
  const max = (values: (number | undefined)[]) => {
    const defined = values.filter((value): value is number => value !== undefined);
    return defined.length === 0 ? undefined : Math.max(...defined);
  };
  const cpus = max(present.map((entry) => entry.cpus));
  const memoryBytes = max(present.map((entry) => sizeBytes(entry.memory)));
  const storageBytes = max(present.map((entry) => sizeBytes(entry.storage)));
  if (cpus !== undefined) result.cpus = cpus;
  if (memoryBytes !== undefined) result.memoryBytes = memoryBytes;
  if (storageBytes !== undefined) result.storageBytes = storageBytes;
  const gpus = present.map((entry) => entry.gpu).filter((gpu) => gpu !== undefined);
  if (gpus.some((gpu) => gpu === true || (typeof gpu === 'object' && gpu !== null))) result.gpu = true;
  else if (gpus.includes('optional')) result.gpu = 'optional';
  else if (gpus.length > 0) result.gpu = false;
  if (result.gpu === true) warnings.push('hostRequirements asks for a GPU, which Warren does not provide');
  return result;
}

function last<T, V>(items: readonly T[], pick: (item: T) => V | undefined): V | undefined {
  for (let index = items.length - 1; index >= 0; index--) {
    const value = pick(items[index]!);
    if (value !== undefined) return value;
  }
  return undefined;
}

function normalizeFolder(folder: string): string {
  const normalized = path.posix.normalize(folder);
  return normalized.length > 1 ? normalized.replace(/\/+$/, '') : normalized;
}

function invalid(source: string, message: string): InvalidError {
  const full = `${source}: ${message}`;
  return new InvalidError(full, [{ field: '', message: full }], INVALID_DEVCONTAINER_CONFIG);
}
