// The ResourceStore contract suite on PGlite (store-contract-suite.ts; its PostgreSQL run is in
// postgres.integration.test.ts), and PGlite's persistence across a reopen of the data directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Environment } from '@warren/api';
import { silentLogger } from '@warren/base';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from './sql-store.js';
import { contractSuite, environment } from './store-contract-suite.js';
import { closeSharedPglite, openTestStore } from './testing.js';

contractSuite('pglite', (overrides) => openTestStore('pglite', overrides));
afterAll(closeSharedPglite);

describe('PGlite persistence', () => {
  it('keeps objects and the resourceVersion across a reopen of the data directory', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-store-'));
    try {
      const first = await openStore({ dataDir, logger: silentLogger });
      const created = await first.create('Environment', environment('persisted'));
      await first.close();
      const second = await openStore({ dataDir, logger: silentLogger });
      try {
        expect(await second.get('Environment', created.metadata.id)).toEqual(created);
        const next: Environment = await second.create('Environment', environment('after'));
        expect(Number(next.metadata.resourceVersion)).toBe(Number(created.metadata.resourceVersion) + 1);
      } finally {
        await second.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
