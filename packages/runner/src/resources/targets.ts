// What the CPU burst controller manages: the environments this runner runs, with the CPU request and limit of
// their class (looked up through the API, cached for a while so a period costs no request).
import { type Environment, type EnvironmentClassSpec, classRequests } from '@warren/api';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import type { CpuTarget } from './cpu-controller.js';

/** Options of {@link classCpuTargets}. */
export interface ClassCpuTargetsOptions {
  /** The environments assigned to this runner (the runner controller's informer cache). */
  environments: () => Environment[];
  /** A class's spec by name; undefined for an unknown class. */
  environmentClass: (name: string) => Promise<EnvironmentClassSpec | undefined>;
  /** How long a class lookup is reused, ms (default 30 000). */
  cacheMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
  logger?: Logger;
}

/**
 * Builds the controller's `targets`: every environment whose desired phase is Running, as `{name: id, request,
 * limit}` from its class (`classRequests(spec).cpuMillicores`, `spec.cpuMillicores`). Environments without a
 * class the API knows are left out (they have no limit to move between), as are those whose lookup fails.
 * Environments not started yet are harmless: the controller skips names without a cgroup.
 */
export function classCpuTargets(options: ClassCpuTargetsOptions): () => Promise<CpuTarget[]> {
  const cacheMs = options.cacheMs ?? 30_000;
  const now = options.now ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const cache = new Map<string, { at: number; spec: EnvironmentClassSpec | undefined }>();
  const lookup = async (name: string): Promise<EnvironmentClassSpec | undefined> => {
    const cached = cache.get(name);
    if (cached && now() - cached.at < cacheMs) return cached.spec;
    try {
      const spec = await options.environmentClass(name);
      cache.set(name, { at: now(), spec });
      return spec;
    } catch (error) {
      logger.debug({ className: name, error: errorMessage(error) }, 'class lookup failed; keeping the last answer');
      return cached?.spec;
    }
  };
  return async () => {
    const targets: CpuTarget[] = [];
    for (const environment of options.environments()) {
      if (environment.spec.desiredPhase !== 'Running') continue;
      const spec = await lookup(environment.spec.className);
      if (!spec) continue;
      targets.push({
        name: environment.metadata.id,
        requestMillicores: classRequests(spec).cpuMillicores,
        limitMillicores: spec.cpuMillicores,
      });
    }
    return targets;
  };
}
