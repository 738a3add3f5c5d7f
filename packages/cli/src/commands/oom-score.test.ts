// Unit tests of the daemons' oom_score_adj: WARREN_OOM_SCORE_ADJ parsing and a write that fails without killing.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_OOM_SCORE_ADJ, oomScoreAdjOf, protectFromOom } from './oom-score.js';

describe('oomScoreAdjOf', () => {
  it('defaults to -900, takes an integer in range or off, refuses the rest', () => {
    expect(oomScoreAdjOf({})).toBe(DEFAULT_OOM_SCORE_ADJ);
    expect(DEFAULT_OOM_SCORE_ADJ).toBe(-900);
    expect(oomScoreAdjOf({ WARREN_OOM_SCORE_ADJ: '-500' })).toBe(-500);
    expect(oomScoreAdjOf({ WARREN_OOM_SCORE_ADJ: 'off' })).toBeUndefined();
    expect(() => oomScoreAdjOf({ WARREN_OOM_SCORE_ADJ: '-1001' })).toThrow(/from -1000 to 1000/);
    expect(() => oomScoreAdjOf({ WARREN_OOM_SCORE_ADJ: 'low' })).toThrow(/WARREN_OOM_SCORE_ADJ/);
  });
});

describe('protectFromOom', () => {
  it('writes the value, and logs one warning instead of failing when it cannot', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-oom-score-'));
    const warnings: string[] = [];
    const logger = { warn: (_fields: object, message: string) => void warnings.push(message) };
    try {
      expect(await protectFromOom(-900, logger, join(dir, 'oom_score_adj'))).toBe(true);
      expect(await readFile(join(dir, 'oom_score_adj'), 'utf8')).toBe('-900\n');
      expect(await protectFromOom(-900, logger, join(dir, 'missing', 'oom_score_adj'))).toBe(false);
      expect(warnings).toEqual([expect.stringMatching(/cannot set oom_score_adj/)]);
      expect(await protectFromOom(undefined, logger, join(dir, 'missing', 'oom_score_adj'))).toBe(false);
      expect(warnings).toHaveLength(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
