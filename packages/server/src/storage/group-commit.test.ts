// Group commit of the SQL store on PGlite (group-commit-suite.ts; its PostgreSQL run is in postgres.integration.test.ts).
import { groupCommitSuite } from './group-commit-suite.js';

groupCommitSuite('pglite');
