// Public API of the runner's devcontainer module: locate, parse, substitute and merge devcontainer.json.
export { loadDevcontainerConfig, locateDevcontainerConfig } from './locate.js';
export type { LocatedDevcontainerConfig } from './locate.js';
export { INVALID_DEVCONTAINER_CONFIG, parseDevcontainerConfig, parseImageMetadata, readDevcontainerConfig } from './parse.js';
export type {
  DevcontainerConfig,
  HostRequirements,
  LifecycleCommandInput,
  ParsedDevcontainerConfig,
  PortAttributes,
  UnsupportedProperty,
} from './parse.js';
export { DEVCONTAINER_ID_LABEL, allowedVariables, devcontainerId, substituteConfig, substituteVariables } from './variables.js';
export type { VariableContext, VariableName } from './variables.js';
export { resolveDevcontainer, resolveRemoteEnv } from './merge.js';
export type {
  DevcontainerBuild,
  LifecycleCommand,
  LifecycleStep,
  ResolveDevcontainerInput,
  ResolvedDevcontainer,
  ResolvedHostRequirements,
  ResolvedLifecycle,
  ResolvedRuntimeOptions,
  WaitFor,
} from './merge.js';
