// The runner protocol against the real control plane (Fastify app + PGlite store + controllers, in
// process): register, heartbeat, watch, status writes, access tokens verified with the server's JWKS,
// and a server restart in the middle (same data dir and port) that the runner survives.
// The host side is the in-memory FakeBackend, so this needs no root.
import { Writable } from 'node:stream';
import type { Environment, EnvironmentPhase, WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness, waitFor as waitForWithin } from '../../../../e2e/harness/index.js';
import { execInEnvironment } from '../access/index.js';
import { FakeBackend } from '../environment/index.js';

/** Polls every 50 ms for up to 30 s. */
const waitFor = <T>(what: string, probe: () => Promise<T | undefined>) => waitForWithin(what, probe, { timeoutMs: 30_000, intervalMs: 50 });

describe('RunnerController against the real control plane', () => {
  let harness: Harness;
  let admin: WarrenClient;
  const backend = new FakeBackend();

  const phaseOf = (id: string, phase: EnvironmentPhase) =>
    waitFor<Environment>(`phase ${phase}`, async () => {
      const environment = await admin.get('Environment', id);
      return environment.status.phase === phase ? environment : undefined;
    });

  beforeAll(async () => {
    harness = await startHarness({ name: 'controller', backend, config: { resyncSeconds: 2 } });
    admin = harness.admin;
  });

  afterAll(async () => {
    await harness?.dispose();
  });

  it('registers and heartbeats with capacity and its access endpoint', async () => {
    const registered = await waitFor('an Active runner', async () => {
      const found = await admin.get('Runner', harness.runner.runnerId);
      return found.status.phase === 'Active' && found.status.capacity ? found : undefined;
    });
    expect(registered.metadata.name).toBe('controller-test');
    expect(registered.status.endpoints.access).toBe(harness.runner.accessUrl);
    expect(registered.status.capacity?.environments).toBe(50);
    expect(registered.status.capacity?.cpuMillicores).toBeGreaterThan(0);
  });

  it('reconciles a scheduled environment, survives a server restart, and execs with a server-issued token', async () => {
    const created = await admin.createEnvironment({
      metadata: { name: 'controller-env' },
      spec: { source: { git: { url: 'https://example.test/repo.git' } } },
    });
    const id = created.metadata.id;
    const running = await phaseOf(id, 'Running');
    expect(running.status.runnerId).toBe(harness.runner.runnerId);
    expect(running.status.observedGeneration).toBe(running.metadata.generation);
    expect(backend.host.get(id)?.container).toBe('running');

    // A server-issued access token is verified with the server's JWKS by the runner's access API.
    const stdout: Buffer[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (stdout.push(chunk), callback()) });
    const grant = await admin.createAccessGrant(id);
    expect(
      await execInEnvironment(grant, ['echo', 'through', 'the', 'runner'], {
        stdout: sink,
        stderr: new Writable({ write: (_c, _e, cb) => cb() }),
      }),
    ).toBe(0);
    expect(Buffer.concat(stdout).toString()).toBe('through the runner\n');

    // Restart the server on the same data dir and port; the runner must resume its watch.
    await harness.controlPlane.stop();
    await sleep(300);
    await harness.controlPlane.start();
    await admin.setDesiredPhase(id, 'Stopped');
    await phaseOf(id, 'Stopped');
    expect(backend.host.get(id)?.container).toBe('absent');

    await admin.setDesiredPhase(id, 'Running');
    await phaseOf(id, 'Running');
    expect(backend.host.get(id)?.postStartRuns).toBe(2);
    expect(backend.host.get(id)?.createRuns).toBe(1);

    await admin.delete('Environment', id);
    await waitFor('the environment to be collected', async () => {
      try {
        await admin.get('Environment', id);
        return undefined;
      } catch {
        return true;
      }
    });
    expect(backend.host.has(id)).toBe(false);
  });
});
