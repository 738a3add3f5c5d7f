// The storage suites against PostgreSQL (WARREN_TEST_DATABASE_URL; .ci/run starts it): the ResourceStore contract
// (store-contract-suite.ts) and group commit (group-commit-suite.ts). Their PGlite runs are unit tests.
import { groupCommitSuite } from './group-commit-suite.js';
import { describePostgres } from './postgres-suite.js';
import { contractSuite } from './store-contract-suite.js';
import { openTestStore } from './testing.js';

describePostgres('ResourceStore contract (postgres)', () => contractSuite('postgres', (overrides) => openTestStore('postgres', overrides)));
describePostgres('group commit (postgres)', () => groupCommitSuite('postgres'));
