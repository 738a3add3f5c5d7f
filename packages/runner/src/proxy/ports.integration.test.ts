// Port URLs end to end in one process: control plane + startRunner (Linux backend) + a node app inside a real
// environment. The app's ports show up in status.ports; the proxy guards the Owner port (token exchange, cookie),
// serves the Public one freely, passes WebSocket upgrades and streams, never forwards Warren's cookie or token,
// and keeps user B out of user A's environment (by name and by id); an expired token is refused.
// Needs root, runc, ip, cc, git, docker-registry, skopeo and the cached test images.
import { type IncomingMessage, request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { type Environment, PortOpenSchema, type WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HarnessWithFixtures, startHarness, waitForPhase } from '../../../../e2e/harness/index.js';
import { execInEnvironment } from '../access/index.js';
import { SESSION_COOKIE } from './session.js';

/** Own slot range (two environments): above the network (15000..), terminal (16000..) and SSH (16100..16349) tests. */
const SLOT_OFFSET = 16_352 + (process.pid % 15) * 2;

/** The app inside the environment: echoes what it received, streams on /stream, echoes WebSocket text frames (RFC 6455 §5). */
const APP = String.raw`
const http = require('http');
const crypto = require('crypto');
let release = [];
const handler = (request, response) => {
  if (request.url.startsWith('/stream')) {
    response.writeHead(200, { 'content-type': 'text/plain' });
    response.write('first\n');
    release.push(() => response.end('last\n'));
    return;
  }
  if (request.url.startsWith('/release')) { release.splice(0).forEach((f) => f()); response.end('ok'); return; }
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ url: request.url, headers: request.headers }));
};
const upgrade = (request, socket) => {
  const accept = crypto.createHash('sha1').update(request.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ' + accept + '\r\n\r\n');
  const send = (text) => { const body = Buffer.from(text); socket.write(Buffer.concat([Buffer.from([0x81, body.length]), body])); };
  send(JSON.stringify({ cookie: request.headers.cookie || null }));
  socket.on('data', (frame) => {
    if ((frame[0] & 0x0f) !== 1) { socket.end(); return; }
    const length = frame[1] & 0x7f, mask = frame.subarray(2, 6), payload = frame.subarray(6, 6 + length);
    send(Buffer.from(payload.map((byte, index) => byte ^ mask[index % 4])).toString());
  });
};
for (const port of [3000, 3001, 3002]) { const server = http.createServer(handler); server.on('upgrade', upgrade); server.listen(port, '0.0.0.0'); }
// A dev server bound to the loopback only (as many are by default).
{ const server = http.createServer(handler); server.on('upgrade', upgrade); server.listen(3003, '127.0.0.1'); }
`;

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A request to the proxy on loopback with an explicit Host header (as a browser sends for `*.localhost`). */
function fetchVia(proxyPort: number, url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: '127.0.0.1', port: proxyPort, path: `${target.pathname}${target.search}`, headers: { host: target.host, ...headers } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    request.on('error', reject);
    request.end();
  });
}

describe('port URLs through the runner proxy (server + runner with the Linux backend)', () => {
  let harness: HarnessWithFixtures;
  let admin: WarrenClient;
  let bob: WarrenClient;
  let proxyPort: number;
  let envA: Environment;

  const open = async (client: WarrenClient, env: string, port: number) =>
    PortOpenSchema.parse(await client.request('POST', `/api/v1/environments/${env}/ports/${port}/open`, {}));
  /** Opens the URL with its token: the proxy answers 303 with its cookie; @returns `name=value` and the plain URL. */
  const login = async (url: string): Promise<{ cookie: string; plain: string }> => {
    const exchange = await fetchVia(proxyPort, url);
    expect(exchange.status).toBe(303);
    const cookie = (exchange.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? '';
    expect(cookie.startsWith(`${SESSION_COOKIE}=`)).toBe(true);
    const plain = new URL(exchange.headers.location ?? '/', url).toString();
    return { cookie, plain };
  };

  beforeAll(async () => {
    harness = await startHarness({
      name: 'ports',
      fixtures: true,
      config: { slotOffset: SLOT_OFFSET },
      runner: { proxy: { listen: { host: '127.0.0.1', port: 0 } } },
    });
    admin = harness.admin;
    bob = (await harness.controlPlane.createUser('bob')).client;
    const { fixtures, runner } = harness;
    // Two environments must fit on small CI hosts.
    await admin.createEnvironmentClass({ metadata: { name: 'small' }, spec: { cpuMillicores: 100, memoryBytes: 512 * 1024 * 1024 } });
    const repoA = await fixtures.git.createRepo(`acme/web${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.javascriptNode}", "forwardPorts": [3000] }`,
      'app.js': APP,
    });
    const repoB = await fixtures.git.createRepo(`bob/web${process.pid}`, {
      '.devcontainer/devcontainer.json': `{ "image": "${fixtures.images.busybox}" }`,
    });
    // Both are named "web": names are unique per owner only.
    const [createdA, createdB] = await Promise.all([
      admin.createEnvironment({
        metadata: { name: 'web' },
        spec: { className: 'small', source: { git: { url: repoA.url } }, ports: [{ port: 3001, visibility: 'Public' }] },
      }),
      bob.createEnvironment({ metadata: { name: 'web' }, spec: { className: 'small', source: { git: { url: repoB.url } } } }),
    ]);
    [envA] = await Promise.all([waitForPhase(admin, createdA.metadata.id, 'Running'), waitForPhase(bob, createdB.metadata.id, 'Running')]);
    const runnerObject = await admin.get('Runner', runner.runnerId);
    proxyPort = Number(new URL(runnerObject.status.endpoints.proxy ?? 'http://x:0').port);
    expect(proxyPort).toBeGreaterThan(0);
  }, 300_000);

  afterAll(async () => {
    // Deletes both environments and waits until the runner removed them (mounts, network, cgroups) before it stops.
    await harness?.dispose();
  }, 120_000);

  it('lists forwardPorts at once and detects ports that start listening', async () => {
    expect(envA.status.ports.some((port) => port.port === 3000 && port.source === 'Devcontainer')).toBe(true);
    // Start the app in its own session so it outlives the exec.
    const grant = await admin.createAccessGrant(envA.metadata.id);
    const sinkStream = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const code = await execInEnvironment(
      grant,
      ['sh', '-c', `setsid -f node ${envA.status.devcontainer?.workspaceFolder}/app.js >/tmp/app.log 2>&1 </dev/null`],
      { stdout: sinkStream, stderr: sinkStream },
    );
    expect(code).toBe(0);
    let ports: Environment['status']['ports'] = [];
    for (let attempt = 0; attempt < 150; attempt++) {
      ports = (await admin.get('Environment', envA.metadata.id)).status.ports;
      if (ports.some((port) => port.port === 3002) && ports.some((port) => port.port === 3003)) break;
      await sleep(100);
    }
    if (!ports.some((port) => port.port === 3002)) {
      const log = new Writable({ write: (chunk: Buffer, _encoding, callback) => void (process.stderr.write(chunk), callback()) });
      await execInEnvironment(await admin.createAccessGrant(envA.metadata.id), ['sh', '-c', 'cat /tmp/app.log; ps aux'], {
        stdout: log,
        stderr: log,
      });
    }
    // A port nobody declared: detected listening (source Detected).
    expect(ports.find((port) => port.port === 3002)).toMatchObject({
      visibility: 'Owner',
      source: 'Detected',
      url: `http://3002-web.localhost:${proxyPort}/`,
    });
    expect(ports.find((port) => port.port === 3000)).toMatchObject({
      visibility: 'Owner',
      source: 'Devcontainer',
      url: `http://3000-web.localhost:${proxyPort}/`,
    });
    // Listening on 127.0.0.1 only: detected as well.
    expect(ports.find((port) => port.port === 3003)).toMatchObject({
      visibility: 'Owner',
      source: 'Detected',
      url: `http://3003-web.localhost:${proxyPort}/`,
    });
    expect(ports.find((port) => port.port === 3001)).toMatchObject({
      visibility: 'Public',
      source: 'Spec',
      url: `http://3001-web.localhost:${proxyPort}/`,
    });
  });

  it('guards the Owner port: 401 without a cookie, token exchange sets it, the app never sees cookie or token', async () => {
    const plainUrl = `http://3000-${envA.metadata.id}.localhost:${proxyPort}/hello?a=1`;
    const refused = await fetchVia(proxyPort, plainUrl, { accept: 'text/html' });
    expect(refused.status).toBe(401);
    expect(refused.body).toContain(`warren ports open ${envA.metadata.id} 3000`);

    const opened = await open(admin, 'web', 3000);
    expect(opened.url).toMatch(new RegExp(`^http://3000-web\\.localhost:${proxyPort}/\\?warren-token=`));
    const { cookie } = await login(opened.url);
    const answer = await fetchVia(proxyPort, `http://3000-web.localhost:${proxyPort}/hello?a=1`, { cookie: `app=mine; ${cookie}` });
    expect(answer.status).toBe(200);
    const seen = JSON.parse(answer.body) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/hello?a=1');
    expect(seen.headers.cookie).toBe('app=mine');
    expect(answer.body).not.toContain(SESSION_COOKIE);
    expect(answer.body).not.toContain('warren-token');
    expect(seen.headers['x-forwarded-host']).toBe(`3000-web.localhost:${proxyPort}`);

    // The path form, with its own cookie path.
    const token = new URL(opened.url).searchParams.get('warren-token') ?? '';
    const pathLogin = await login(`http://127.0.0.1:${proxyPort}/p/${envA.metadata.id}/3000/x?warren-token=${token}`);
    const viaPath = await fetchVia(proxyPort, pathLogin.plain, { cookie: pathLogin.cookie });
    expect(viaPath.status).toBe(200);
    expect((JSON.parse(viaPath.body) as { url: string }).url).toBe('/x');
  });

  it('serves the Public port without anything, and passes WebSocket upgrades and streams', async () => {
    const answer = await fetchVia(proxyPort, `http://3001-web.localhost:${proxyPort}/`);
    expect(answer.status).toBe(200);

    const { cookie } = await login((await open(admin, envA.metadata.id, 3000)).url);
    const socket = new WebSocket(`ws://127.0.0.1:${proxyPort}/ws`, {
      headers: { host: `3000-web.localhost:${proxyPort}`, cookie: `${cookie}; theirs=1` },
    });
    const messages: string[] = [];
    const both = new Promise<void>((resolve, reject) => {
      socket.on('message', (data: Buffer) => {
        messages.push(data.toString('utf8'));
        if (messages.length === 2) resolve();
      });
      socket.on('error', reject);
    });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    socket.send('hello through the proxy');
    await both;
    expect(JSON.parse(messages[0]!)).toEqual({ cookie: 'theirs=1' });
    expect(messages[1]).toBe('hello through the proxy');
    socket.terminate();

    const first = await new Promise<string>((resolve, reject) => {
      const request = httpRequest(
        { host: '127.0.0.1', port: proxyPort, path: '/stream', headers: { host: `3001-web.localhost:${proxyPort}` } },
        (response) => {
          response.once('data', (chunk: Buffer) => {
            resolve(chunk.toString('utf8'));
            response.resume();
          });
        },
      );
      request.on('error', reject);
      request.end();
    });
    expect(first).toBe('first\n');
    await fetchVia(proxyPort, `http://3001-web.localhost:${proxyPort}/release`);
  });

  it("reaches an app bound to the environment's loopback only, requests and WebSocket upgrades", async () => {
    const { cookie } = await login((await open(admin, 'web', 3003)).url);
    const answer = await fetchVia(proxyPort, `http://3003-web.localhost:${proxyPort}/on-loopback?b=2`, { cookie: `${cookie}; app=1` });
    expect(answer.status).toBe(200);
    const seen = JSON.parse(answer.body) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/on-loopback?b=2');
    expect(seen.headers.cookie).toBe('app=1');
    // Several requests in a row (each on its own client connection, so one helper each).
    for (let index = 0; index < 3; index++)
      expect((await fetchVia(proxyPort, `http://3003-web.localhost:${proxyPort}/again`, { cookie })).status).toBe(200);

    const socket = new WebSocket(`ws://127.0.0.1:${proxyPort}/ws`, { headers: { host: `3003-web.localhost:${proxyPort}`, cookie } });
    const messages: string[] = [];
    const both = new Promise<void>((resolve, reject) => {
      socket.on('message', (data: Buffer) => {
        messages.push(data.toString('utf8'));
        if (messages.length === 2) resolve();
      });
      socket.on('error', reject);
    });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    socket.send('hello on loopback');
    await both;
    expect(messages[1]).toBe('hello on loopback');
    socket.terminate();
  });

  it("keeps user B out of user A's environment, by name and by id; refuses an expired token", async () => {
    await expect(open(bob, envA.metadata.id, 3000)).rejects.toMatchObject({ code: 404 });
    const bobUrl = (await open(bob, 'web', 3000)).url;
    // B's token names B's environment: on A's id it is refused.
    const token = new URL(bobUrl).searchParams.get('warren-token') ?? '';
    expect((await fetchVia(proxyPort, `http://3000-${envA.metadata.id}.localhost:${proxyPort}/?warren-token=${token}`)).status).toBe(403);
    // B's cookie on the shared name reaches B's environment (where nothing listens), never A's app.
    const { cookie } = await login(bobUrl);
    const viaName = await fetchVia(proxyPort, `http://3000-web.localhost:${proxyPort}/`, { cookie });
    expect(viaName.status).toBe(502);
    expect(viaName.body).not.toContain('"headers"');
    expect((await fetchVia(proxyPort, `http://3000-${envA.metadata.id}.localhost:${proxyPort}/`, { cookie })).status).toBe(401);

    const expired = await harness.controlPlane.signToken(
      { runnerId: harness.runner.runnerId, userId: envA.metadata.ownerId, environmentId: envA.metadata.id, port: 3000 },
      { ttlSeconds: 60, now: new Date(Date.now() - 3_600_000) },
    );
    const refused = await fetchVia(proxyPort, `http://3000-web.localhost:${proxyPort}/?warren-token=${expired.token}`);
    expect(refused.status).toBe(401);
    expect(refused.body).toContain('expired');
  });
});
