// The port proxy's cases (server-suite.ts) and its fast path's (relay-suite.ts) with the native front serving the
// address (proxy-front.c, front.ts), as the runner runs by default. Needs cc: the front is compiled on first use.
import { relaySuite } from './relay-suite.js';
import { proxySuite } from './server-suite.js';

proxySuite('native');
relaySuite('native');
