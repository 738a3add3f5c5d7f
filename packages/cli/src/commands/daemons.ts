// `warren up` (server + a local runner in a child process), `warren server`, `warren runner`.
import type { Command } from 'commander';
import { type ChildProcess, fork } from 'node:child_process';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { destination, pino } from 'pino';
import { InvalidError } from '@warren/base';
import { WarrenClient } from '@warren/api';
// The server and runner packages are loaded by the commands that run them (dynamic import), not by every CLI
// command: together they add ~0.45 s to the start of `warren env exec` and the like.
import type { ResourceStore } from '@warren/server';
import type { CommandContext } from '../command-context.js';
import { readContextFile, saveContext } from '../context.js';
import { oomScoreAdjOf, protectFromOom } from './oom-score.js';

/** Default data directory: `WARREN_DATA_DIR`, else `/var/lib/warren` (DESIGN.md "Data on a host"). */
export function defaultDataDir(env = process.env): string {
  return env.WARREN_DATA_DIR || '/var/lib/warren';
}

/**
 * Parses `HOST:PORT` (IPv6 as `[::1]:7080`).
 * @throws {InvalidError} naming the flag when it is not of that form or the port is out of range.
 */
export function parseListen(text: string, flag: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidError(`${flag} must be HOST:PORT such as 127.0.0.1:7080, got "${text}"`);
  }
  return { host: (match[1] ?? match[2])!, port };
}

/** The server's `/metrics` token from `WARREN_METRICS_TOKEN` (without it only admin users may scrape). */
function metricsOption(env: NodeJS.ProcessEnv = process.env): { app?: { metrics: { token: string } } } {
  return env.WARREN_METRICS_TOKEN ? { app: { metrics: { token: env.WARREN_METRICS_TOKEN } } } : {};
}

function makeLogger(level = process.env.WARREN_LOG_LEVEL ?? 'info') {
  // Logs go to stderr so stdout stays for results.
  return pino({ level, base: undefined }, destination(2));
}

/**
 * Waits for SIGINT/SIGTERM (or, in a runner started by `warren up`, a `shutdown` message from it), then runs
 * `close` once. A second signal during `close` takes the default action (ends the process at once).
 */
function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (stopping) return;
      stopping = true;
      void close().finally(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('message', (message: unknown) => {
      if ((message as { type?: unknown } | null)?.type === 'shutdown') stop();
    });
  });
}

/** Messages a runner child sends to `warren up` over the IPC channel. */
type RunnerChildMessage = { type: 'ready'; accessUrl: string };

/** Grace period for the runner child to close after `warren up` asks it to, ms; then it is killed. */
const RUNNER_CLOSE_GRACE_MS = 20_000;

/**
 * Starts `warren runner` as a child process of `warren up` (same node, same CLI entry point) and waits until it
 * reports ready. The runner is its own process because every system tool it starts is a fork(2) of its process, and
 * fork copies the page tables of the whole address space: next to the embedded database (PGlite keeps hundreds of
 * MiB resident) each spawn blocked the event loop for ~17 ms instead of ~1.5 ms (measured with 800 MiB RSS).
 * The token goes through the environment (`WARREN_TOKEN`), not argv. The child exits at once when the IPC
 * channel closes (warren up was killed), leaving environments running as a killed runner does.
 * @returns the child and the runner's access URL.
 * @throws {Error} when the child exits before it is ready (its log, on the shared stderr, says why).
 */
async function startRunnerChild(input: {
  server: string;
  token: string;
  name: string;
  dataDir: string;
  flags: string[];
}): Promise<{ child: ChildProcess; accessUrl: string }> {
  const entry = process.argv[1];
  if (!entry) throw new Error('cannot find the warren entry point to start the runner');
  const child = fork(entry, ['runner', '--name', input.name, '--data-dir', input.dataDir, ...input.flags], {
    env: { ...process.env, WARREN_SERVER: input.server, WARREN_TOKEN: input.token, WARREN_RUNNER_CHILD: '1' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const accessUrl = await new Promise<string>((resolve, reject) => {
    const onMessage = (message: RunnerChildMessage) => {
      if (message.type !== 'ready') return;
      child.off('exit', onExit);
      resolve(message.accessUrl);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      child.off('message', onMessage);
      reject(new Error(`the runner exited before it was ready (${signal ?? `code ${code}`}); its log above says why`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  return { child, accessUrl };
}

/** Asks the runner child to close (IPC `shutdown`), waits up to {@link RUNNER_CLOSE_GRACE_MS}, then kills it. */
async function stopRunnerChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.send({ type: 'shutdown' });
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), RUNNER_CLOSE_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** Registers `up`, `server` and `runner`. */
export function registerDaemonCommands(program: Command, context: CommandContext): void {
  program
    .command('up')
    .description('run the Warren server with an embedded database and a local runner (a child process)')
    .option('--data-dir <dir>', 'where Warren keeps everything (default $WARREN_DATA_DIR or /var/lib/warren)')
    .option('--listen <host:port>', 'API address', '127.0.0.1:7080')
    .option('--access-listen <host:port>', 'runner access API address (exec, logs, terminal, stats, /metrics)', '127.0.0.1:7081')
    .option('--ssh-listen <host:port>', 'SSH gateway address ("off" to disable)', '127.0.0.1:2222')
    .option('--proxy-listen <host:port>', 'port URL proxy address', '127.0.0.1:7082')
    .option('--proxy-domain <domain>', 'port URLs are <port>-<env>.<domain>', 'localhost')
    .option('--proxy-front <native|node>', PROXY_FRONT_HELP, 'native')
    .option('--database-url <url>', 'use PostgreSQL instead of the embedded database')
    .action(
      async (options: {
        dataDir?: string;
        listen: string;
        accessListen: string;
        sshListen: string;
        proxyListen: string;
        proxyDomain: string;
        proxyFront: string;
        databaseUrl?: string;
      }) => {
        const dataDir = options.dataDir ?? defaultDataDir();
        const listen = parseListen(options.listen, '--listen');
        const accessListen = parseListen(options.accessListen, '--access-listen');
        parseProxyFront(options.proxyFront);
        const logger = makeLogger();
        // Before the runner child is forked, so it starts protected too (it sets its own again).
        await protectFromOom(oomScoreAdjOf(), logger);
        const { ensureRunnerToken, startServer } = await import('@warren/server');
        const server = await startServer({
          dataDir: join(dataDir, 'server'),
          databaseUrl: options.databaseUrl ?? process.env.WARREN_DATABASE_URL,
          host: listen.host,
          port: listen.port,
          logger,
          ...metricsOption(),
        });
        // Save a CLI context for this server unless one already points at it with a working token.
        const saved = await readContextFile();
        const existing = Object.values(saved.contexts).find((candidate) => candidate.server === server.url);
        const works = existing
          ? await new WarrenClient({ server: server.url, token: existing.token }).whoami().then(
              () => true,
              () => false,
            )
          : false;
        if (!works) {
          const token = server.adminToken ?? (await issueAdminToken(server.store));
          await saveContext('local', { server: server.url, token });
          context.stderr.write('saved an admin token for this server as the CLI context "local"\n');
        }
        const runnerName = sanitizeName(hostname());
        let runner: { child: ChildProcess; accessUrl: string };
        try {
          runner = await startRunnerChild({
            server: server.url,
            token: await ensureRunnerToken(server.store, runnerName),
            name: runnerName,
            dataDir,
            flags: [
              '--access-listen',
              `${accessListen.host.includes(':') ? `[${accessListen.host}]` : accessListen.host}:${accessListen.port}`,
              '--ssh-listen',
              options.sshListen,
              '--proxy-listen',
              options.proxyListen,
              '--proxy-domain',
              options.proxyDomain,
              '--proxy-front',
              options.proxyFront,
            ],
          });
        } catch (error) {
          await server.close();
          throw error;
        }
        context.stdout.write(`Warren is up at ${server.url} (runner ${runnerName}, access ${runner.accessUrl}); press Ctrl-C to stop\n`);
        let closing = false;
        let crash: string | undefined;
        const crashed = new Promise<void>((resolve) => {
          runner.child.once('exit', (code, signal) => {
            if (closing) return;
            crash = `the runner process exited unexpectedly (${signal ?? `code ${code}`}); warren up stopped`;
            resolve();
          });
        });
        await Promise.race([untilSignal(() => Promise.resolve()), crashed]);
        closing = true;
        await stopRunnerChild(runner.child);
        await server.close();
        if (crash) throw new Error(crash);
      },
    );

  program
    .command('server')
    .description('run only the control plane (API, controllers)')
    .option('--data-dir <dir>', 'where the embedded database lives (default $WARREN_DATA_DIR or /var/lib/warren)')
    .option('--listen <host:port>', 'API address', '127.0.0.1:7080')
    .option('--database-url <url>', 'PostgreSQL URL (default $WARREN_DATABASE_URL; embedded database when unset)')
    .action(async (options: { dataDir?: string; listen: string; databaseUrl?: string }) => {
      const listen = parseListen(options.listen, '--listen');
      const logger = makeLogger();
      await protectFromOom(oomScoreAdjOf(), logger);
      const { startServer } = await import('@warren/server');
      const server = await startServer({
        dataDir: join(options.dataDir ?? defaultDataDir(), 'server'),
        databaseUrl: options.databaseUrl ?? process.env.WARREN_DATABASE_URL,
        host: listen.host,
        port: listen.port,
        logger,
        ...metricsOption(),
      });
      if (server.adminToken) {
        context.stderr.write(
          `first start: the admin token is ${server.adminToken}\nsave it with: warren login --server ${server.url} --token <token>\n`,
        );
      }
      context.stdout.write(`Warren server listening at ${server.url}\n`);
      await untilSignal(() => server.close());
    });

  program
    .command('runner')
    .description('run a runner that connects to a Warren server (needs root)')
    .option('--name <name>', 'runner name (default: the host name)')
    .option('--data-dir <dir>', 'where environments and images live (default $WARREN_DATA_DIR or /var/lib/warren)')
    .option('--access-listen <host:port>', 'access API address (exec, logs)', '127.0.0.1:7081')
    .option('--advertise-url <url>', 'access API URL as clients reach it (default http://<access-listen>)')
    .option('--ssh-listen <host:port>', 'SSH gateway address ("off" to disable)', '0.0.0.0:2222')
    .option('--proxy-listen <host:port>', 'port URL proxy address', '0.0.0.0:7082')
    .option('--proxy-domain <domain>', 'port URLs are <port>-<env>.<domain> (needs wildcard DNS to this host)', 'localhost')
    .option('--proxy-front <native|node>', PROXY_FRONT_HELP, 'native')
    .action(
      async (options: {
        name?: string;
        dataDir?: string;
        accessListen: string;
        advertiseUrl?: string;
        sshListen: string;
        proxyListen: string;
        proxyDomain: string;
        proxyFront: string;
      }) => {
        // Flags, else WARREN_SERVER / WARREN_TOKEN (never the saved CLI context: that holds a personal token).
        const flags = context.options();
        const server = flags.server ?? process.env.WARREN_SERVER;
        const token = flags.token ?? process.env.WARREN_TOKEN;
        if (!server || !token) {
          throw new InvalidError(
            'warren runner needs --server URL and --token T (a runner token made by an admin), or WARREN_SERVER and WARREN_TOKEN',
          );
        }
        const logger = makeLogger();
        await protectFromOom(oomScoreAdjOf(), logger);
        const name = options.name ?? sanitizeName(hostname());
        const { startRunner } = await import('@warren/runner');
        const runner = await startRunner({
          server,
          token,
          name,
          dataDir: join(options.dataDir ?? defaultDataDir(), 'runner'),
          accessListen: parseListen(options.accessListen, '--access-listen'),
          ...(options.advertiseUrl ? { advertiseUrl: options.advertiseUrl } : {}),
          ...accessServices(options),
          logger,
        });
        context.stdout.write(`runner ${name} connected to ${server} (access ${runner.accessUrl})\n`);
        if (process.env.WARREN_RUNNER_CHILD === '1' && process.send) {
          // Started by `warren up`: report ready, and end at once if it goes away (killed): environments keep running
          // and a new `warren up` adopts them, as after a SIGKILLed runner.
          process.send({ type: 'ready', accessUrl: runner.accessUrl } satisfies RunnerChildMessage);
          const orphaned = () => {
            logger.warn({}, 'warren up went away; the runner exits and leaves environments running');
            process.exit(1);
          };
          process.once('disconnect', orphaned);
          await untilSignal(() => runner.close());
          // The IPC channel would keep the process alive.
          process.off('disconnect', orphaned);
          process.disconnect();
          return;
        }
        await untilSignal(() => runner.close());
      },
    );
}

/**
 * Issues a new personal token for the admin user (for `warren up`, whose CLI context lost its token).
 * @returns the token secret, shown only here.
 */
async function issueAdminToken(store: ResourceStore): Promise<string> {
  const { ADMIN_USER_NAME, issueToken } = await import('@warren/server');
  const admin = (await store.getByName('User', ADMIN_USER_NAME))[0];
  if (!admin) throw new Error('the admin user is missing: the server did not bootstrap');
  const { secret } = await issueToken(store, {
    name: `cli-${Date.now().toString(36)}`,
    ownerId: admin.metadata.id,
    type: 'Personal',
    description: 'warren up CLI context',
  });
  return secret;
}

const PROXY_FRONT_HELP = 'who serves the proxy address: native (a C relay, docs/design/0008; Node when it cannot be compiled) or node';

/**
 * The `--proxy-front` flag.
 * @throws {InvalidError} for anything but `native` or `node`.
 */
export function parseProxyFront(value: string): 'native' | 'node' {
  if (value !== 'native' && value !== 'node') throw new InvalidError(`--proxy-front must be "native" or "node", not "${value}"`);
  return value;
}

/**
 * The SSH gateway and port proxy options of `startRunner` from the `--ssh-listen`/`--proxy-*` flags.
 * @throws {InvalidError} for a malformed address or `--proxy-front`.
 */
function accessServices(options: { sshListen: string; proxyListen: string; proxyDomain: string; proxyFront: string }) {
  return {
    ...(options.sshListen === 'off' ? {} : { sshListen: parseListen(options.sshListen, '--ssh-listen') }),
    proxy: {
      listen: parseListen(options.proxyListen, '--proxy-listen'),
      domain: options.proxyDomain,
      front: parseProxyFront(options.proxyFront),
    },
  };
}

/** Turns a host name into a valid resource name (DNS label). */
export function sanitizeName(text: string): string {
  const cleaned = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);
  return cleaned || 'local';
}
