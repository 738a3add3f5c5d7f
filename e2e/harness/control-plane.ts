// The control plane of the integration harness: the real server (startServer on PGlite in a temp directory, fast
// controllers) with an admin client, test users, runner tokens and the server's token signer.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WarrenClient } from '@warren/api';
import { silentLogger } from '@warren/base';
import {
  type AccessTokenClaims,
  type AppOptions,
  type RunningServer,
  ensureRunnerToken,
  issueToken,
  loadSigningKeys,
  signAccessToken,
  startServer,
} from '@warren/server';

/** Options of {@link startControlPlane}. */
export interface ControlPlaneOptions {
  /** Names the data directory (`$TMPDIR/warren-<name>-server-*`). */
  name: string;
  /** Tunables of the HTTP API, e.g. `keepaliveMinIntervalSeconds: 1`. */
  app?: AppOptions;
}

/** A user made by {@link ControlPlane.createUser}, with a client holding its personal token. */
export interface TestUser {
  id: string;
  name: string;
  client: WarrenClient;
}

/** A running control plane; {@link ControlPlane.dispose} stops it and removes its data directory. */
export interface ControlPlane {
  /** Base URL, `http://127.0.0.1:<port>`; the same across {@link ControlPlane.stop} and {@link ControlPlane.start}. */
  readonly url: string;
  readonly dataDir: string;
  /** The bootstrap admin (its token was shown on the first start). */
  readonly admin: WarrenClient;
  /** The running server (store, app, controllers). @throws {Error} while stopped. */
  readonly server: RunningServer;
  /** False between {@link ControlPlane.stop} and {@link ControlPlane.start}. */
  readonly running: boolean;
  /** Creates a non-admin user and a personal token for it. */
  createUser(name: string): Promise<TestUser>;
  /** A fresh runner token for the runner `runnerName` (as `warren up` mints for its local runner). */
  runnerToken(runnerName: string): Promise<string>;
  /**
   * Signs an access token (or, with `claims.port`, a port token) with the server's key, as the API would; tests
   * sign expired ones or ones for other users with it.
   */
  signToken(claims: AccessTokenClaims, options?: { ttlSeconds?: number; now?: Date }): Promise<{ token: string; expiresTime: string }>;
  /** Stops the server (controllers, HTTP, store); the data directory stays. */
  stop(): Promise<void>;
  /** Starts it again on the same data directory and port, as a restarted server process. */
  start(): Promise<void>;
  /** Stops the server and removes its data directory. Safe to call twice. */
  dispose(): Promise<void>;
}

/** Controllers check every 200 ms and take the lease over within 200 ms, so tests need not wait for timers. */
const CONTROLLER_OPTIONS = { checkIntervalMs: 200, leaseRetryMs: 200 };

/**
 * Starts the server with PGlite in a new temp directory on a free port of 127.0.0.1.
 * @throws when the server cannot start; the directory is removed again.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const dataDir = await mkdtemp(join(tmpdir(), `warren-${options.name}-server-`));
  const launch = (port: number) =>
    startServer({
      dataDir,
      port,
      logger: silentLogger,
      controllerOptions: CONTROLLER_OPTIONS,
      ...(options.app ? { app: options.app } : {}),
    });
  let current: RunningServer | undefined;
  try {
    current = await launch(0);
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const url = current.url;
  const port = Number(new URL(url).port);
  const admin = new WarrenClient({ server: url, token: current.adminToken ?? '' });
  const running = (): RunningServer => {
    if (!current) throw new Error('the control plane is stopped');
    return current;
  };
  const stop = async () => {
    const server = current;
    current = undefined;
    await server?.close();
  };
  return {
    url,
    dataDir,
    admin,
    get server() {
      return running();
    },
    get running() {
      return current !== undefined;
    },
    async createUser(name) {
      const user = await admin.createUser({ metadata: { name } });
      const { secret } = await issueToken(running().store, { name: `${name}-token`, ownerId: user.metadata.id, type: 'Personal' });
      return { id: user.metadata.id, name, client: new WarrenClient({ server: url, token: secret }) };
    },
    runnerToken: (runnerName) => ensureRunnerToken(running().store, runnerName),
    async signToken(claims, signOptions = {}) {
      return signAccessToken(await loadSigningKeys(running().store), claims, signOptions);
    },
    stop,
    async start() {
      if (current) throw new Error('the control plane is already running');
      current = await launch(port);
    },
    async dispose() {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
