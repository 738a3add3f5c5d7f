// Part `density` of bench/noisy-neighbour (issue 9): `exec true` round trips through the access API into one
// environment of the built-in `default` class, alone on the runner, then with 7 more idle Running `default`
// environments next to it. Target: with 8 environments, exec p50 within 1.5× of a single environment's.
import type { WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { deleteEnvironments, execTrueRoundTrips, percentile, startBenchRunner, waitRunning } from './common.js';

/** Environments in the crowded phase (the first one included). */
export const DENSITY_ENVIRONMENTS = 8;
/** Issue 9 target: exec p50 with {@link DENSITY_ENVIRONMENTS} environments ≤ this × a single environment's. */
export const DENSITY_TARGET_RATIO = 1.5;

/** `exec true` figures of one phase, milliseconds. */
export interface ExecFigures {
  p50: number;
  p99: number;
}

/** Result of {@link measureDensity}: the first environment's exec alone and with the others Running. */
export interface DensityResult {
  one: ExecFigures;
  crowded: ExecFigures;
  environments: number;
}

/**
 * Runs the density part on its own runner (burst controller on, runner.json's default).
 * @param server the control plane (its `default` class is the built-in one).
 * @param repoUrl the git repository every environment is created from.
 * @param slotOffset first of the {@link DENSITY_ENVIRONMENTS} slots it uses.
 * @param execs round trips per phase.
 * @throws {Error} when an environment fails to start or an exec fails; everything it made is deleted either way.
 */
export async function measureDensity(
  admin: WarrenClient,
  server: { url: string; runnerToken: string },
  repoUrl: string,
  slotOffset: number,
  execs: number,
): Promise<DensityResult> {
  const bench = await startBenchRunner(server, {
    name: 'bench-nn-density',
    slotOffset,
    maxEnvironments: DENSITY_ENVIRONMENTS,
    cpuController: true,
  });
  const ids: string[] = [];
  const create = async (index: number) => {
    const created = await admin.createEnvironment({
      metadata: { name: `nn-density-${index}` },
      spec: { className: 'default', source: { git: { url: repoUrl } } },
    });
    ids.push(created.metadata.id);
    return created.metadata.id;
  };
  const figures = (values: number[]): ExecFigures => ({ p50: percentile(values, 50), p99: percentile(values, 99) });
  try {
    const first = await create(0);
    await waitRunning(admin, first);
    await sleep(2000);
    const one = figures(await execTrueRoundTrips(admin, first, execs));
    const others: string[] = [];
    for (let index = 1; index < DENSITY_ENVIRONMENTS; index++) others.push(await create(index));
    for (const id of others) await waitRunning(admin, id);
    await sleep(5000); // let the starts' after-effects (image unpacking, page cache writeback) settle
    const crowded = figures(await execTrueRoundTrips(admin, first, execs));
    return { one, crowded, environments: ids.length };
  } finally {
    await deleteEnvironments(admin, ids);
    await bench.close();
  }
}
