// The ControllerManager's leader election on PGlite (leader-election-suite.ts; its PostgreSQL run is in
// manager-postgres.integration.test.ts).
import { leaderElectionSuite } from './leader-election-suite.js';

leaderElectionSuite('pglite');
