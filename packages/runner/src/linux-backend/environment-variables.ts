// The environment variables of an environment's processes: image `Env`, devcontainer.json `containerEnv` and
// `remoteEnv`, and an exec's own entries, merged in the reference CLI's order.
import { type ResolvedDevcontainer, resolveRemoteEnv } from '../devcontainer/index.js';
import type { ContainerUser } from './users.js';

/** PATH when the image sets none (Docker's default). */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `NAME=value` entries as a map (entries without a name are skipped; per variable last wins). */
function envMap(entries: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of entries) {
    const separator = entry.indexOf('=');
    if (separator > 0) map.set(entry.slice(0, separator), entry.slice(separator + 1));
  }
  return map;
}

/**
 * Image `Env` entries with `containerEnv` applied on top (per variable last wins), PATH defaulted.
 * @returns `NAME=value` entries: the container process's environment.
 */
export function mergeEnv(imageEnv: readonly string[], containerEnv: Readonly<Record<string, string>>): string[] {
  const map = envMap(imageEnv);
  if (!map.has('PATH')) map.set('PATH', DEFAULT_PATH);
  for (const [name, value] of Object.entries(containerEnv)) map.set(name, value);
  return [...map].map(([name, value]) => `${name}=${value}`);
}

/**
 * Environment of tool processes: image Env, then containerEnv, then remoteEnv (with `${containerEnv:X}`
 * substituted; `null` unsets), then the request's entries; HOME and USER of the user unless set.
 * @returns `NAME=value` entries.
 */
export function execEnv(devcontainer: ResolvedDevcontainer, imageEnv: string[], user: ContainerUser, extra: string[]): string[] {
  const base = envMap(mergeEnv(imageEnv, devcontainer.containerEnv));
  const variables = new Map<string, string>([['HOME', user.home], ['USER', user.name], ...base]);
  if (!variables.has('PATH')) variables.set('PATH', DEFAULT_PATH);
  if (base.has('HOME') && user.uid !== 0 && base.get('HOME') === '/root') variables.set('HOME', user.home);
  const remote = resolveRemoteEnv(devcontainer.remoteEnv, Object.fromEntries(variables));
  for (const [name, value] of Object.entries(remote)) {
    if (value === null) variables.delete(name);
    else variables.set(name, value);
  }
  for (const [name, value] of envMap(extra)) variables.set(name, value);
  return [...variables].map(([name, value]) => `${name}=${value}`);
}
