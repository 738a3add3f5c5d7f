// Test support: the one rule for suites that also run against PostgreSQL (the integration tier, see vitest.config.ts).
import { describe, it } from 'vitest';
import { testDatabaseUrl } from './testing.js';

/**
 * Registers a suite's PostgreSQL run: calls `register` when WARREN_TEST_DATABASE_URL is set. Otherwise registers, in
 * its place, a test that fails under CI (CI must run it: .ci/run starts PostgreSQL) or, elsewhere, a skipped suite
 * whose reason is printed.
 * @param name the suite as reported, e.g. `ResourceStore contract (postgres)`.
 */
export function describePostgres(name: string, register: () => void): void {
  if (testDatabaseUrl()) {
    register();
  } else if (process.env['CI']) {
    describe(name, () => {
      it('needs WARREN_TEST_DATABASE_URL in CI', () => {
        throw new Error(`WARREN_TEST_DATABASE_URL is not set: CI must run ${name} against PostgreSQL (see .ci/run)`);
      });
    });
  } else {
    const reason = 'skipped: WARREN_TEST_DATABASE_URL is not set (e.g. postgres://warren:warren@127.0.0.1:5432/warren)';
    console.warn(`${name} ${reason}`);
    describe.skip(`${name} ${reason}`, () => {
      it('runs against PostgreSQL', () => {});
    });
  }
}
