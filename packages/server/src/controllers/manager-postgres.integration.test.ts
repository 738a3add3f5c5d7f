// The ControllerManager's leader election against PostgreSQL (WARREN_TEST_DATABASE_URL; .ci/run starts it): two
// stores with their own pools and lease connections, as two server processes have.
import { describePostgres } from '../storage/postgres-suite.js';
import { leaderElectionSuite } from './leader-election-suite.js';

describePostgres('ControllerManager (postgres)', () => leaderElectionSuite('postgres'));
