// The port proxy's bridge to the native front (front.ts, docs/design/0008): starts the front with its hand-off
// listener, answers the front's questions with the proxy's admission and targets, tells it to forget its answers
// when the environments change (flush), and passes handed-over connections to the Node proxy.
import { type Server as NetServer, type Socket, createServer as createNetServer } from 'node:net';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Environment } from '@warren/api';
import { type Logger, errorMessage } from '@warren/base';
import type { ProxyAdmission } from './admission.js';
import { type FrontAnswer, type ProxyFront, ProxyFrontError, ensureProxyFront, readProxyLine, startProxyFront } from './front.js';
import { NETWORK_CACHE_MS, type ProxyTargets } from './targets.js';

/** How often the bridge checks whether the environments changed so the front must forget its answers, in ms. */
const FRONT_FLUSH_CHECK_MS = 100;

/** Options of {@link startFrontBridge}. */
export interface FrontBridgeOptions {
  /** Where the front is compiled (e.g. `<dataDir>/bin`). */
  binDir: string;
  /** Where the private hand-off directory `proxy-*` is made (default the OS temp directory); see PortProxyOptions. */
  runDir?: string;
  /** The public address; port 0 picks a free one. */
  host: string;
  port: number;
  /** X-Forwarded-Proto. */
  proto: 'http' | 'https';
  /** The environments of this runner (what the front's answers depend on). */
  environments: () => Environment[];
  admission: ProxyAdmission;
  targets: ProxyTargets;
  /** An environment had relayed requests. */
  onActivity: (environmentId: string) => void;
  /** Takes a connection the front handed over (paused; resumed after this returns) and its client's address. */
  accept(socket: Socket, remoteAddress: string): void;
  /** The front died while running (logged here): the caller serves the address itself. */
  onExit(): void;
  logger: Logger;
}

/** A running native front with its hand-off listener. */
export interface FrontBridge {
  /** The bound port. */
  port: number;
  /** Stops the front and the hand-off listener and removes the hand-off directory. */
  close(): Promise<void>;
}

/**
 * Starts the native front with a hand-off listener on a unix socket in a private directory (mode 0700, so only
 * the runner's user can claim a client address with a PROXY line).
 * @returns undefined when the front cannot be compiled or started (logged; the Node proxy listens instead).
 * @throws {ProxyFrontError} when the front cannot bind the address (`code` as Node's, e.g. `EADDRINUSE`).
 */
export async function startFrontBridge(options: FrontBridgeOptions): Promise<FrontBridge | undefined> {
  const { logger } = options;
  let binary: string;
  let dir: string | undefined;
  const handOff = createNetServer({ allowHalfOpen: true }, (socket) =>
    readProxyLine(socket, (handed, remoteAddress) => {
      options.accept(handed, remoteAddress);
      handed.resume();
    }),
  );
  try {
    binary = await ensureProxyFront(options.binDir, logger);
    if (options.runDir !== undefined) {
      await mkdir(options.runDir, { recursive: true, mode: 0o700 });
      for (const stale of await readdir(options.runDir))
        if (stale.startsWith('proxy-')) await rm(join(options.runDir, stale), { recursive: true, force: true });
    }
    dir = await mkdtemp(join(options.runDir ?? tmpdir(), options.runDir === undefined ? 'warren-proxy-' : 'proxy-'));
    const path = join(dir, 'hand-off.sock');
    await new Promise<void>((resolve, reject) => {
      handOff.once('error', reject);
      // A long accept queue: the front retries a full one, but a burst should not have to wait for that.
      handOff.listen({ path, backlog: 4096 }, () => resolve());
    });
  } catch (error) {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    logger.warn({ error: errorMessage(error) }, 'port proxy: the native front is not available, Node serves the address');
    return undefined;
  }
  const front = await startFrontProcess(options, binary, handOff, dir);
  if (!front) return undefined;

  // The front keeps answers for up to NETWORK_CACHE_MS; it forgets them as soon as what they depend on changes.
  let seen = fingerprint(options.environments());
  const watch = setInterval(() => {
    const now = fingerprint(options.environments());
    if (now !== seen) front.flush();
    seen = now;
  }, FRONT_FLUSH_CHECK_MS).unref();

  return {
    port: front.port,
    async close() {
      clearInterval(watch);
      await front.close();
      handOff.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Starts the compiled front with the hand-off listener ready in `dir`; the rest as {@link startFrontBridge}. */
async function startFrontProcess(
  options: FrontBridgeOptions,
  binary: string,
  handOff: NetServer,
  dir: string,
): Promise<ProxyFront | undefined> {
  const { logger } = options;
  try {
    return await startProxyFront({
      binary,
      host: options.host,
      port: options.port,
      handOffPath: join(dir, 'hand-off.sock'),
      proto: options.proto,
      decide: (host, sessionValues) => decideForFront(options, host, sessionValues),
      onActivity: options.onActivity,
      onExit(error) {
        logger.error({ error: errorMessage(error) }, 'port proxy: the native front stopped, Node serves the address');
        options.onExit();
      },
      logger,
    });
  } catch (error) {
    handOff.close();
    await rm(dir, { recursive: true, force: true });
    // Bind errors are the caller's to handle (service.ts picks a free port on EADDRINUSE), as Node's would be.
    if (error instanceof ProxyFrontError && (error.code.startsWith('EADDR') || error.code === 'EACCES')) throw error;
    logger.warn({ error: errorMessage(error) }, 'port proxy: the native front did not start, Node serves the address');
    return undefined;
  }
}

/**
 * The front's question (front.ts): where a host-form request with these session values may go, for at most
 * {@link NETWORK_CACHE_MS} (the front also forgets every answer when an environment's phase or ports change).
 */
async function decideForFront(options: FrontBridgeOptions, host: string, sessionValues: string[]): Promise<FrontAnswer> {
  const deny: FrontAnswer = { kind: 'deny', ttlMs: NETWORK_CACHE_MS };
  const admission = options.admission.admitHost(host, sessionValues);
  if (admission === undefined) return deny;
  const target = await options.targets.frontTarget(admission.environmentId, admission.port);
  if (!target) return deny;
  return { kind: 'grant', ttlMs: NETWORK_CACHE_MS, ...admission, target };
}

/** What the front's answers depend on: each environment's id, name, phase and port visibility. */
function fingerprint(environments: Environment[]): string {
  let text = '';
  for (const environment of environments) {
    text += `${environment.metadata.id} ${environment.metadata.name} ${environment.status.phase}`;
    for (const entry of environment.spec.ports) text += ` ${entry.port}:${entry.visibility}`;
    text += '\n';
  }
  return text;
}
