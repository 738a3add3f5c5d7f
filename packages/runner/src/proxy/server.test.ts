// The port proxy served by Node alone (server-suite.ts; the same cases with the native front are in
// native-front.integration.test.ts).
import { proxySuite } from './server-suite.js';

proxySuite('node');
