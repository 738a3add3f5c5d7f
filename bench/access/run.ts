// Access benchmark (issue 4 "Benchmark (bench/access)"): against one real environment, HTTP throughput and latency
// through the runner's port proxy vs directly to the same app at the environment's address (ratio, added p50);
// the SSH exec round trip with OpenSSH (`ssh ... true`) and with a warm ssh2 connection, beside the access API exec;
// and 200 concurrent SSH sessions on one runner. Figures are printed, never asserted. See README.md.
//
// Compiled with rootDir ../.. into bench/access/dist/ so the e2e fixtures (TypeScript) compile along.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Environment, WarrenClient } from '@warren/api';
import { sleep } from '@warren/base';
import { type RunningRunner, exec, startRunner } from '@warren/runner';
import { startBenchFixtures } from '../shared/fixtures.js';
import { startServerProcess } from '../shared/server-process.js';
import type * as Cgroups from '../../packages/runner/dist/linux/cgroups.js';
import type * as RuntimeSelection from '../../packages/runner/dist/linux/runtime-selection.js';
import { APP_PORT, type Figures, HEAVIER, PARTS, PROXY_FRONT, SLOT_OFFSET, load, run } from './common.js';
import { measureProxy, reportProxy } from './proxy.js';
import { measureSessions, measureSshExec, prepareSshClient, reportSessions, reportSsh } from './ssh.js';

/**
 * The app inside the environment, on all addresses. `/`: a fixed 27-byte answer (hello world: the least work an app
 * can do per request, so the proxy's share is largest). Two heavier shapes a development server serves, for
 * comparison: `/asset`, a 32 KiB JavaScript module from memory (a dev server's static or cached module), and
 * `/page`, a page rendered per request (~40 rows of data into ~7 KiB of HTML).
 */
const APP = `const asset = Buffer.from('export const data = ' + JSON.stringify('x'.repeat(32 * 1024 - 24)) + ';\\n');
const rows = Array.from({ length: 40 }, (_, i) => ({ id: i, name: 'item ' + i, price: (i * 1.37).toFixed(2), tags: ['a', 'b', 'c'].map((t) => t + i) }));
const escape = (text) => String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
require('http').createServer((request, response) => {
  if (request.url === '/asset') { response.writeHead(200, { 'content-type': 'text/javascript' }); response.end(asset); return; }
  if (request.url === '/page') {
    const body = '<!doctype html><table>' + rows.map((row) => '<tr><td>' + row.id + '</td><td>' + escape(row.name) + '</td><td>' + row.price + '</td><td>' + row.tags.map(escape).join(', ') + '</td></tr>').join('') + '</table>' + JSON.stringify(rows);
    response.writeHead(200, { 'content-type': 'text/html' }); response.end(body); return;
  }
  response.writeHead(200, { 'content-type': 'text/plain' }); response.end('hello from the environment\\n');
}).listen(${APP_PORT}, '0.0.0.0');\n`;

async function waitForPhase(admin: WarrenClient, id: string, phase: Environment['status']['phase']): Promise<Environment> {
  let last: Environment | undefined;
  for (let attempt = 0; attempt < 3000; attempt++) {
    last = await admin.get('Environment', id);
    if (last.status.phase === phase) return last;
    if (last.status.phase === 'Failed') break;
    await sleep(100);
  }
  throw new Error(`environment did not reach ${phase}: ${JSON.stringify(last?.status)}`);
}

async function main(): Promise<Figures> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const step of cleanups.splice(0).reverse()) await step().catch((error: unknown) => console.error('cleanup failed:', error));
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  const figures: Figures = {
    front: PROXY_FRONT,
    bound: Object.fromEntries(['/', ...HEAVIER.map(({ path }) => path)].map((path) => [path, []])),
    heavier: Object.fromEntries(HEAVIER.map(({ path }) => [path, { direct: [], proxy: [] }])),
    direct: { throughput: [], latency: [] },
    proxy: { throughput: [], latency: [] },
    openssh: [],
    ssh2Warm: [],
    ssh2Cold: [],
    accessExec: [],
    sessions: { ok: 0, failed: 0, wallMs: 0, perSession: [] },
  };
  try {
    // ---------------------------------------------------------------- fixtures
    await exec(['wrk', '--version'], { okCodes: [0, 1] }).catch(() => {
      throw new Error('wrk is missing: apt-get install wrk (see bench/access/README.md)');
    });
    const { repo } = await startBenchFixtures(
      'access',
      (images) => ({ '.devcontainer/devcontainer.json': `{ "image": "${images.javascriptNode}" }\n`, 'app.js': APP }),
      cleanups,
    );

    // ---------------------------------------------------------------- control plane + runner (SSH gateway, proxy)
    // The server runs in its own process, as with `warren up` (whose runner is a child process).
    const server = await startServerProcess('bench-access');
    cleanups.push(() => server.stop());
    const admin = new WarrenClient({ server: server.url, token: server.adminToken });
    const runnerDir = await mkdtemp(join(tmpdir(), 'warren-bench-access-runner-'));
    cleanups.push(() => rm(runnerDir, { recursive: true, force: true }));
    await chmod(runnerDir, 0o711);
    const { selectOciRuntime } = await load<typeof RuntimeSelection>('packages/runner/dist/linux/runtime-selection.js');
    const { CgroupManager } = await load<typeof Cgroups>('packages/runner/dist/linux/cgroups.js');
    // The runner's own selection (config `runtime`, default auto: crun when its self-test passes, else runc),
    // with private state roots; BENCH_RUNTIME=runc|crun forces one.
    const stateRoots = { runc: `/run/warren/runc-bench-access-${process.pid}`, crun: `/run/warren/crun-bench-access-${process.pid}` };
    const runtime = await selectOciRuntime({
      prefer: (process.env.BENCH_RUNTIME as 'auto' | 'runc' | 'crun' | undefined) ?? 'auto',
      runcStateRoot: stateRoots.runc,
      crunStateRoot: stateRoots.crun,
    });
    console.log(`OCI runtime: ${runtime.name}`);
    for (const root of Object.values(stateRoots)) {
      cleanups.push(() => rm(root, { recursive: true, force: true }));
      cleanups.push(() => rm(`${root}-exec`, { recursive: true, force: true }));
    }
    const cgroups = await CgroupManager.detect({ parent: `warren-bench-access-${process.pid}` });
    cleanups.push(() => cgroups.removeParent());
    const runner: RunningRunner = await startRunner({
      server: server.url,
      token: server.runnerToken,
      name: 'bench-access',
      dataDir: runnerDir,
      accessListen: { host: '127.0.0.1', port: 0 },
      sshListen: { host: '127.0.0.1', port: 0 },
      proxy: { listen: { host: '127.0.0.1', port: 0 }, front: PROXY_FRONT },
      config: { slotOffset: SLOT_OFFSET, heartbeatSeconds: 1 },
      // The host's nftables table is shared with test suites; the firewall is not on the request path.
      linux: { firewall: false, runtime, cgroups },
    });
    cleanups.push(() => runner.close());

    // ---------------------------------------------------------------- the environment and its app
    const created = await admin.createEnvironment({
      metadata: { name: 'bench-access' },
      spec: { source: { git: { url: repo.url } }, ports: [{ port: APP_PORT, visibility: 'Public' }] },
    });
    cleanups.push(async () => {
      await admin.delete('Environment', created.metadata.id).catch(() => undefined);
      for (let attempt = 0; attempt < 600; attempt++) {
        if (
          await admin.get('Environment', created.metadata.id).then(
            () => false,
            () => true,
          )
        )
          break;
        await sleep(100);
      }
    });
    const environment = await waitForPhase(admin, created.metadata.id, 'Running');
    const id = environment.metadata.id;
    await run(admin, id, [
      'sh',
      '-c',
      `setsid -f node ${environment.status.devcontainer?.workspaceFolder}/app.js >/tmp/app.log 2>&1 </dev/null`,
    ]);
    const address = (
      await run(admin, id, [
        'node',
        '-e',
        "console.log(Object.values(require('os').networkInterfaces()).flat().find((i) => i.family === 'IPv4' && !i.internal).address)",
      ])
    ).trim();
    const runnerObject = await admin.get('Runner', runner.runnerId);
    const proxyPort = Number(new URL(runnerObject.status.endpoints.proxy ?? 'http://x:0').port);
    const sshPort = Number(runnerObject.status.endpoints.ssh?.split(':').pop());
    const directUrl = `http://${address}:${APP_PORT}/`;
    const proxyUrl = `http://127.0.0.1:${proxyPort}/`;
    const proxyHost = `${APP_PORT}-bench-access.localhost:${proxyPort}`;
    for (let attempt = 0; ; attempt++) {
      const [direct, proxied] = await Promise.all([
        fetch(directUrl).then(
          (response) => response.status,
          () => 0,
        ),
        fetch(`http://127.0.0.1:${proxyPort}/p/bench-access/${APP_PORT}/`).then(
          (response) => response.status,
          () => 0,
        ),
      ]);
      if (direct === 200 && proxied === 200) break;
      if (attempt > 300) throw new Error(`the app does not answer (direct ${direct}, proxy ${proxied})`);
      await sleep(100);
    }
    figures.front = runner.proxyFront;
    console.log(
      `environment ${id} at ${address}; proxy ${proxyUrl} (Host ${proxyHost}, ${runner.proxyFront} front); ssh 127.0.0.1:${sshPort}`,
    );

    // ---------------------------------------------------------------- HTTP: direct vs proxy, interleaved
    if (PARTS.has('proxy')) await measureProxy(figures, { address, directUrl, proxyUrl, proxyHost }, cleanups);
    if (!PARTS.has('ssh') && !PARTS.has('sessions')) return figures;

    // ---------------------------------------------------------------- SSH
    const sshClient = await prepareSshClient(admin, sshPort, cleanups);
    if (PARTS.has('ssh')) await measureSshExec(figures, admin, id, sshClient);
    if (!PARTS.has('sessions')) return figures;

    // ---------------------------------------------------------------- 200 concurrent SSH sessions
    await measureSessions(figures, admin, id, sshClient);
    return figures;
  } finally {
    await cleanup();
  }
}

function report(figures: Figures): void {
  console.log(`\n# bench/access — ${new Date().toISOString().slice(0, 10)}, parts: ${[...PARTS].join(', ')}`);
  if (PARTS.has('proxy')) reportProxy(figures);
  if (PARTS.has('ssh')) reportSsh(figures);
  if (PARTS.has('sessions')) reportSessions(figures);
}

main().then(
  (figures) => {
    report(figures);
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
