// The native front (proxy-front.c, front.ts) as the running port proxy, against a real app on loopback: it forgets
// its answers when an environment changes, reaches a loopback-only app from inside the namespace (setns, needs root),
// gives bind errors the caller can act on, and when it dies the Node proxy takes its address over.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { type IncomingMessage, createServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Environment } from '@warren/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PortProxy, startPortProxy } from './server.js';
import { SessionSigner } from './session.js';
import { RawClient } from './testing/raw-client.js';
import { TEST_FRONT_BIN_DIR } from './testing/front-bin.js';

function environment(id: string, name: string, ports: Environment['spec']['ports'], phase: 'Running' | 'Stopped' = 'Running'): Environment {
  return {
    kind: 'Environment',
    apiVersion: 'v1',
    metadata: { id, name, generation: 1, resourceVersion: '1', createdTime: new Date(0).toISOString(), labels: {}, ownerId: 'usr-a' },
    spec: {
      desiredPhase: 'Running',
      source: { git: { url: 'https://example.com/r.git' } },
      devcontainer: {},
      className: 'default',
      ports,
      timeouts: { inactivitySeconds: 0 },
    },
    status: { phase, observedGeneration: 1, conditions: [], ports: [], runnerId: 'run-test' },
  };
}

/** The command names (comm) of this process's children, by pid. */
function childProcesses(): Map<number, string> {
  const found = new Map<number, string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === process.pid) found.set(Number(entry), stat.slice(stat.indexOf('(') + 1, close));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const children = () => [...childProcesses().values()];
/** The pids of this process's children running the front (comm is cut at 15 characters). */
const frontProcesses = () => [...childProcesses()].filter(([, name]) => name.startsWith('warren-proxy-fr')).map(([pid]) => pid);

describe('native front: a running proxy', () => {
  let app: ReturnType<typeof createServer>;
  let appPort: number;
  let proxy: PortProxy;
  const environments: Environment[] = [];
  const get = (path = '/') => `GET ${path} HTTP/1.1\r\nHost: ${appPort}-hello.localhost\r\nX-Case-Check: 1\r\n\r\n`;
  /** A port proxy with the native front over `environments`; the app is at 127.0.0.1 unless `network` says else. */
  const start = (options: Partial<Parameters<typeof startPortProxy>[0]> = {}) =>
    startPortProxy({
      host: '127.0.0.1',
      port: 0,
      environments: () => environments,
      network: () => Promise.resolve({ address: '127.0.0.1', pid: 0 }),
      verifyToken: () => Promise.reject(new Error('unused')),
      sessions: new SessionSigner(randomBytes(32)),
      nativeFront: { binDir: TEST_FRONT_BIN_DIR },
      ...options,
    });
  /** The status of one request on a new connection to `port`; 0 when the connection fails. */
  const statusAt = async (port: number): Promise<number> => {
    try {
      const other = await RawClient.open(port);
      other.send(get());
      const status = (await other.response()).status;
      other.close();
      return status;
    } catch {
      return 0;
    }
  };

  beforeAll(async () => {
    app = createServer((request: IncomingMessage, response) =>
      response.end(JSON.stringify({ url: request.url, relayedBy: request.socket.remotePort })),
    );
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appPort = (app.address() as AddressInfo).port;
    environments.push(environment('env-a', 'hello', [{ port: appPort, visibility: 'Public' }]));
    proxy = await start();
    expect(proxy.front).toBe('native');
  });

  afterAll(async () => {
    await proxy?.close();
    app?.closeAllConnections();
    await new Promise((resolve) => app?.close(resolve));
  });

  it('forgets its answers when a port becomes private or the environment stops, and serves again when it is back', async () => {
    const client = await RawClient.open(proxy.port);
    client.send(get());
    expect((await client.response()).status).toBe(200);
    // Private now: the next request on the same connection is refused (within the proxy's change check, 100 ms).
    environments[0] = environment('env-a', 'hello', []);
    await expect.poll(() => statusAt(proxy.port)).toBe(401);
    client.send(get());
    expect((await client.response()).status).toBe(401);
    client.close();

    environments[0] = environment('env-a', 'hello', [{ port: appPort, visibility: 'Public' }], 'Stopped');
    await expect.poll(() => statusAt(proxy.port)).toBe(503);

    environments[0] = environment('env-a', 'hello', [{ port: appPort, visibility: 'Public' }]);
    await expect.poll(() => statusAt(proxy.port)).toBe(200);
  });

  // setns(2) into a network namespace needs CAP_SYS_ADMIN.
  const rootless = process.getuid?.() !== 0 ? 'needs root (setns into a network namespace)' : undefined;
  if (rootless) console.warn(`skipping the native front's loopback-only test: ${rootless}`);
  it.skipIf(rootless !== undefined)('reaches an app bound to loopback only from inside its namespace, with no helper process', async () => {
    // This process's namespace stands for the environment's; its "veth address" 127.0.0.3 reaches nothing (the
    // app listens on 127.0.0.1 only), so an answer proves the front connected from inside the namespace.
    const own = await start({ network: () => Promise.resolve({ address: '127.0.0.3', pid: process.pid }) });
    const client = await RawClient.open(own.port);
    const ports = new Set<number>();
    for (let index = 0; index < 5; index++) {
      client.send(get(`/loop/${index}`));
      const answer = await client.response();
      expect(answer.status).toBe(200);
      const seen = JSON.parse(answer.body.toString('utf8')) as { url: string; relayedBy: number };
      expect(seen.url).toBe(`/loop/${index}`);
      ports.add(seen.relayedBy);
    }
    expect(ports.size).toBe(1); // one app connection for the keep-alive client connection
    expect(children().filter((name) => name === 'nsenter' || name === 'socat')).toEqual([]);
    client.close();
    await own.close();
  });

  it("keeps its hand-off socket in the runner's run directory, removing what a killed run left there", async () => {
    const runDir = await mkdtemp(join(tmpdir(), 'warren-front-run-'));
    await mkdir(join(runDir, 'proxy-left-by-a-killed-run'));
    await writeFile(join(runDir, 'proxy-left-by-a-killed-run', 'hand-off.sock'), '');
    await mkdir(join(runDir, 'other'));
    const own = await start({ nativeFront: { binDir: TEST_FRONT_BIN_DIR, runDir } });
    const entries = await readdir(runDir);
    expect(entries).not.toContain('proxy-left-by-a-killed-run');
    expect(entries).toContain('other');
    const ours = entries.filter((entry) => entry.startsWith('proxy-'));
    expect(ours).toHaveLength(1);
    expect((await stat(join(runDir, ours[0]!))).mode & 0o777).toBe(0o700);
    expect((await stat(join(runDir, ours[0]!, 'hand-off.sock'))).isSocket()).toBe(true);
    await own.close();
    expect(await readdir(runDir)).toEqual(['other']);
    await rm(runDir, { recursive: true, force: true });
  });

  it('says EADDRINUSE when the address is taken, so that the runner can pick another port', async () => {
    const taken = createNetServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    await expect(start({ port, network: () => Promise.resolve(undefined) })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    taken.close();
  });

  it('when the front dies, the Node proxy takes its address over', async () => {
    const suites = frontProcesses();
    const own = await start();
    const ours = frontProcesses().filter((pid) => !suites.includes(pid));
    expect(ours).toHaveLength(1);
    const client = await RawClient.open(own.port);
    client.send(get());
    expect((await client.response()).status).toBe(200);
    process.kill(ours[0]!, 'SIGKILL');
    await client.closed;
    await expect.poll(() => statusAt(own.port)).toBe(200);
    await own.close();
  });
});
