// Where proxy tests compile the native front (front.ts ensureProxyFront): one cache directory shared by every run
// and suite (compileCached is safe for concurrent first uses), so test runs do not leave a directory each behind.
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** `<os temp dir>/warren-test-bin`: the native front's compile cache for tests. */
export const TEST_FRONT_BIN_DIR = join(tmpdir(), 'warren-test-bin');
