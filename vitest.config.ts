// Vitest runs the TypeScript sources directly: the "source" export condition maps
// each @warren/* package to its src/index.ts, so tests never need a build.
// Two tiers, as Vitest projects: `unit` needs no root and no system tools (npm run test:unit, < 2 min);
// `integration` needs root and the real tools (runc, nft, ip, git, a registry, OpenSSH, PostgreSQL): every
// `*.integration.test.ts` and the e2e scenarios (npm run test:integration). `vitest run` runs both.
import { defineConfig } from 'vitest/config';

/** Tests that need root or real tools: by name beside the code, and everything under e2e/. */
const INTEGRATION = ['packages/*/src/**/*.integration.test.ts', 'e2e/**/*.test.ts'];

export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    exclude: ['**/node_modules/**', '**/dist/**'],
    testTimeout: 60_000,
    hookTimeout: 300_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts'],
          exclude: ['**/node_modules/**', '**/dist/**', ...INTEGRATION],
        },
      },
      { extends: true, test: { name: 'integration', include: INTEGRATION } },
    ],
  },
});
