// The port proxy's fast path on the Node relay (relay-suite.ts; the same cases on the native front are in
// native-front.integration.test.ts).
import { relaySuite } from './relay-suite.js';

relaySuite('node');
