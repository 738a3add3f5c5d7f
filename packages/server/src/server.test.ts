// The whole control plane as `warren server` runs it: on-disk PGlite, bootstrap, controllers, HTTP.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@warren/base';
import { WarrenClient, isConditionTrue, type Environment } from '@warren/api';
import { ensureRunnerToken } from './auth/index.js';
import { startServer } from './server.js';

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-server-test-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe('startServer', () => {
  it('bootstraps once, schedules through the controllers and keeps its data and key across restarts', async () => {
    const first = await startServer({
      dataDir,
      host: '127.0.0.1',
      port: 0,
      logger: silentLogger,
      controllerOptions: { checkIntervalMs: 100 },
    });
    let kid: string;
    try {
      expect(first.adminToken).toMatch(/^wrn_/);
      const admin = new WarrenClient({ server: first.url, token: first.adminToken! });
      expect(await admin.whoami()).toMatchObject({ kind: 'User', name: 'admin', admin: true });

      // A local runner (as `warren up` starts it) registers and heartbeats with a token from ensureRunnerToken.
      const runner = new WarrenClient({ server: first.url, token: await ensureRunnerToken(first.store, 'local') });
      const registered = await runner.createRunner({ metadata: { name: 'local' } });
      await runner.updateRunnerStatus(registered.metadata.id, {
        phase: 'Active',
        lastHeartbeatTime: new Date().toISOString(),
        endpoints: {},
        conditions: [],
        allocatable: { cpuMillicores: 8000, memoryBytes: 16 * 1024 ** 3, environments: 10 },
      });
      const created = await admin.createEnvironment({ spec: { source: { git: { url: 'https://example.com/o/app.git' } } } });
      // The runner sees the environment arrive on its watch once the scheduler has placed it.
      let scheduled: Environment | undefined;
      for await (const event of runner.watch('Environment', { signal: AbortSignal.timeout(30_000) })) {
        if (event.type !== 'BOOKMARK' && event.object.metadata.id === created.metadata.id) {
          scheduled = event.object;
          break;
        }
      }
      expect(scheduled?.status.runnerId).toBe(registered.metadata.id);
      expect(isConditionTrue(scheduled!.status.conditions, 'Scheduled')).toBe(true);
      // A second call replaces the local runner token: the old one stops working.
      await ensureRunnerToken(first.store, 'local');
      await expect(runner.whoami()).rejects.toMatchObject({ code: 401 });
      kid = ((await (await fetch(`${first.url}/api/v1/keys`)).json()) as { keys: Array<{ kid: string }> }).keys[0]!.kid;
    } finally {
      await first.close();
    }

    const second = await startServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, controllers: false });
    try {
      expect(second.adminToken).toBeUndefined();
      expect(second.controllers).toBeUndefined();
      const admin = new WarrenClient({ server: second.url, token: first.adminToken! });
      const environments = await admin.list('Environment');
      expect(environments.items).toHaveLength(1);
      const keys = (await (await fetch(`${second.url}/api/v1/keys`)).json()) as { keys: Array<{ kid: string }> };
      expect(keys.keys[0]!.kid).toBe(kid);
    } finally {
      await second.close();
    }
  });

  it('fails cleanly when the port is taken, and releases the data directory', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const port = (holder.address() as AddressInfo).port;
      await expect(startServer({ dataDir, host: '127.0.0.1', port, logger: silentLogger, controllers: false })).rejects.toThrow(
        /EADDRINUSE/,
      );
    } finally {
      holder.close();
    }
    // The failed start closed its store: the same data directory opens again.
    const again = await startServer({ dataDir, host: '127.0.0.1', port: 0, logger: silentLogger, controllers: false });
    await again.close();
  });
});
