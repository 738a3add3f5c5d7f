// Keeps Warren's own daemons (server, runner, `warren up`) out of the OOM killer's first picks: a negative
// oom_score_adj for this process (proc(5)), which environments never inherit (their OCI config sets 0).
import { writeFile } from 'node:fs/promises';
import { InvalidError } from '@warren/base';

/** The default `oom_score_adj` of Warren's daemons: well below every environment (0), above lxcfs (-1000). */
export const DEFAULT_OOM_SCORE_ADJ = -900;

/**
 * The `oom_score_adj` to set from `WARREN_OOM_SCORE_ADJ`: an integer in [-1000, 1000], `off` for none, default
 * {@link DEFAULT_OOM_SCORE_ADJ}.
 * @returns undefined for `off`.
 * @throws {InvalidError} for anything else.
 */
export function oomScoreAdjOf(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const text = env.WARREN_OOM_SCORE_ADJ?.trim();
  if (text === undefined || text === '') return DEFAULT_OOM_SCORE_ADJ;
  if (text === 'off') return undefined;
  const value = Number(text);
  if (!/^-?\d+$/.test(text) || value < -1000 || value > 1000) {
    throw new InvalidError(`WARREN_OOM_SCORE_ADJ must be an integer from -1000 to 1000 or "off", got "${text}"`);
  }
  return value;
}

/**
 * Writes `value` to this process's `oom_score_adj` (children forked later inherit it). Lowering it needs root
 * (CAP_SYS_RESOURCE): a failure is logged once as a warning and is not fatal, since Warren works without it.
 * @returns whether the value was written.
 */
export async function protectFromOom(
  value: number | undefined,
  logger: { warn(fields: object, message: string): void },
  path = '/proc/self/oom_score_adj',
): Promise<boolean> {
  if (value === undefined) return false;
  try {
    await writeFile(path, `${value}\n`);
    return true;
  } catch (error) {
    logger.warn(
      { oomScoreAdj: value, error: (error as Error).message },
      'cannot set oom_score_adj (needs root); Warren may be killed before environments when the host runs out of memory',
    );
    return false;
  }
}
