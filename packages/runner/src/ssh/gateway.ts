// The runner's SSH gateway (issue 4 §1): `ssh -p 2222 <environment>@<runner-host>` gives a shell, commands,
// SFTP (and so scp) and local port forwarding inside the environment. The gateway never decides a login itself
// (issue 4 §5, "Zero trust"): it proves the client holds the key (or takes the password), asks the server
// (`POST /api/v1/ssh/authorize`) and accepts only a server-signed grant that verifies for this runner and
// environment. Protocol: RFC 4252 (authentication), RFC 4254 (channels: session, pty-req, window-change,
// signal, exec, shell, subsystem, direct-tcpip).
import { constants as osConstants } from 'node:os';
import type { Duplex } from 'node:stream';
import type { SshAuthorizeRequest, SshGrant } from '@warren/api';
import { type Logger, errorMessage, silentLogger } from '@warren/base';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, PseudoTtyInfo, ServerChannel, Session } from 'ssh2';
import type { AccessVerifier } from '../access/index.js';
import type { EnvironmentBackend, ExecSession } from '../environment/index.js';
import { type HostKey, parseOneKey } from './host-key.js';
import { serveSftp } from './sftp.js';

/** Options of {@link startSshGateway}. */
export interface SshGatewayOptions {
  /** Address to bind, e.g. `0.0.0.0`. */
  host: string;
  /** Port to bind (default config 2222); 0 picks a free port. */
  port: number;
  hostKey: HostKey;
  backend: EnvironmentBackend;
  /**
   * Asks the server whether a login may proceed (`POST /api/v1/ssh/authorize` with the runner token).
   * @returns the grant; any throw is a denial.
   */
  authorize(request: SshAuthorizeRequest): Promise<SshGrant>;
  /** Verifies the grant's token for this runner and environment (createAccessVerifier). */
  verify: AccessVerifier;
  /**
   * Opens a TCP connection to `host:port` as seen from inside the environment, for `ssh -L` (direct-tcpip,
   * RFC 4254 §7.2). Absent: forwarding is refused.
   */
  connect?: (environmentId: string, host: string, port: number) => Promise<Duplex>;
  /** Called when a session starts and on client input (the activity reporter batches it). */
  onActivity?: (environmentId: string) => void;
  logger?: Logger;
}

/** A listening gateway. */
export interface SshGateway {
  /** The bound address as `host:port`. */
  address: string;
  port: number;
  /** Stops accepting connections and ends open ones. */
  close(): Promise<void>;
}

/** Who a connection is, once authenticated. */
interface Login {
  environmentId: string;
  userId: string;
}

/** The OpenSSH public key line of a key blob (RFC 4253 §6.6: the blob starts with its type string). */
function publicKeyLine(blob: Buffer): string {
  const length = blob.readUInt32BE(0);
  return `${blob.subarray(4, 4 + length).toString('latin1')} ${blob.toString('base64')}`;
}

function quote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * The user's login shell from the environment's passwd database (getent(1), libc-bin, present in every Debian
 * image), else /bin/sh. A shell started this way is interactive but not a login shell: a login shell would read
 * /etc/profile, which on Debian resets PATH and so drops the image's and remoteEnv's PATH (sshd users get the same
 * reset; devcontainer users expect the container's environment).
 */
const USER_SHELL = 'shell=$(getent passwd "$(id -un)" 2>/dev/null | cut -d: -f7); [ -x "$shell" ] || shell=/bin/sh';

/**
 * Starts the SSH gateway.
 * @throws {Error} (errno) when the address cannot be bound.
 */
export async function startSshGateway(options: SshGatewayOptions): Promise<SshGateway> {
  const logger = (options.logger ?? silentLogger).child({ component: 'ssh' });
  const connections = new Set<Connection>();

  const server = new ssh2.Server({ hostKeys: [options.hostKey.privateKey], ident: 'Warren' }, (connection) => {
    connections.add(connection);
    // Small packets at once (no Nagle): every login round trip otherwise waits on the client's delayed ACK
    // (~40 ms per exchange on Linux, tcp(7) TCP_NODELAY).
    // (ssh2's server Connection has setNoDelay, lib/server.js; @types/ssh2 declares it on Client only.)
    (connection as Connection & { setNoDelay(noDelay: boolean): unknown }).setNoDelay(true);
    connection.on('close', () => connections.delete(connection));
    connection.on('error', (error: Error) => logger.debug({ error: errorMessage(error) }, 'ssh connection error'));
    let login: Login | undefined;
    // One authorize call per (user name, key) even though OpenSSH first asks whether a key is acceptable and then
    // signs with it (RFC 4252 §7).
    const grants = new Map<string, Promise<SshGrant | undefined>>();
    const grantFor = (request: SshAuthorizeRequest, cacheKey: string | undefined): Promise<SshGrant | undefined> => {
      const cached = cacheKey === undefined ? undefined : grants.get(cacheKey);
      if (cached) return cached;
      const pending = options.authorize(request).catch((error: unknown) => {
        logger.info({ environment: request.environment, error: errorMessage(error) }, 'ssh login denied by the server');
        return undefined;
      });
      if (cacheKey !== undefined) grants.set(cacheKey, pending);
      return pending;
    };
    const acceptGrant = async (context: AuthContext, grant: SshGrant | undefined): Promise<void> => {
      if (!grant) return context.reject();
      try {
        const claims = await options.verify(grant.token, grant.environmentId);
        login = { environmentId: claims.environmentId, userId: claims.userId };
        logger.info({ environmentId: login.environmentId, userId: login.userId, method: context.method }, 'ssh login');
        context.accept();
      } catch (error) {
        logger.warn({ environment: context.username, error: errorMessage(error) }, 'ssh grant refused');
        context.reject();
      }
    };

    connection.on('authentication', (context) => {
      const environment = context.username;
      switch (context.method) {
        case 'publickey': {
          let line: string;
          try {
            line = publicKeyLine(context.key.data);
          } catch {
            return context.reject();
          }
          const cacheKey = `${environment}\n${line}`;
          const request: SshAuthorizeRequest = { environment, username: environment, publicKey: line };
          if (!context.signature || !context.blob) {
            // A query: is this key acceptable? (RFC 4252 §7, no signature yet.)
            void grantFor(request, cacheKey).then((grant) => (grant ? context.accept() : context.reject()));
            return;
          }
          const key = parseOneKey(line);
          if (key instanceof Error || key.verify(context.blob, context.signature, context.hashAlgo) !== true) {
            return context.reject();
          }
          void grantFor(request, cacheKey).then((grant) => acceptGrant(context, grant));
          return;
        }
        case 'password':
          void grantFor({ environment, username: environment, password: context.password }, undefined).then((grant) =>
            acceptGrant(context, grant),
          );
          return;
        case 'none':
        case 'hostbased':
        case 'keyboard-interactive':
          return context.reject(['publickey', 'password']);
      }
    });

    connection.on('ready', () => {
      const current = login;
      if (!current) return connection.end();
      options.onActivity?.(current.environmentId);
      connection.on('session', (acceptSession) => handleSession(acceptSession(), current));
      connection.on('tcpip', (accept, reject, info) => {
        if (!options.connect) return reject();
        options.connect(current.environmentId, info.destIP, info.destPort).then(
          (socket) => {
            const channel = accept();
            options.onActivity?.(current.environmentId);
            logger.debug({ environmentId: current.environmentId, port: info.destPort }, 'ssh forwarding opened');
            socket.on('error', () => channel.destroy());
            channel.on('error', () => socket.destroy());
            channel.on('data', () => options.onActivity?.(current.environmentId));
            socket.pipe(channel).pipe(socket);
          },
          (error: unknown) => {
            logger.info(
              { environmentId: current.environmentId, host: info.destIP, port: info.destPort, error: errorMessage(error) },
              'ssh forwarding refused',
            );
            reject();
          },
        );
      });
    });
  });

  function handleSession(session: Session, login: Login): void {
    const log = logger.child({ environmentId: login.environmentId, userId: login.userId });
    let pty: PseudoTtyInfo | undefined;
    const env: string[] = [];
    let running: ExecSession | undefined;

    session.on('pty', (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      if (pty) pty = { ...pty, cols: info.cols, rows: info.rows };
      running?.resize?.(info.cols, info.rows);
      accept?.();
    });
    session.on('env', (accept, _reject, info) => {
      // The user is already inside their own environment with its privileges: any variable is theirs to set.
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(info.key)) env.push(`${info.key}=${info.val}`);
      accept?.();
    });
    session.on('signal', (accept, _reject, info) => {
      // RFC 4254 §6.9: the name without "SIG". Delivered as is where the exec path can (the exec agent); otherwise
      // the ones that end a process end it. Interactive signals (Ctrl-C, Ctrl-Z) also travel through the pty.
      const number = (osConstants.signals as Record<string, number | undefined>)[`SIG${info.name}`];
      if (number !== undefined && running?.signal) running.signal(number);
      else if (['KILL', 'TERM', 'HUP', 'INT'].includes(info.name)) running?.kill();
      accept?.();
    });

    const run = (channel: ServerChannel, argv: string[], what: string) => {
      options.onActivity?.(login.environmentId);
      const terminal = pty;
      const environment = terminal?.term ? [...env, `TERM=${terminal.term}`] : env;
      options.backend
        .exec(
          login.environmentId,
          {
            argv,
            tty: terminal !== undefined,
            ...(terminal && terminal.cols > 0 && terminal.rows > 0 ? { cols: terminal.cols, rows: terminal.rows } : {}),
            env: environment,
          },
          log,
        )
        .then(
          (started) => {
            running = started;
            log.info({ what, tty: terminal !== undefined }, 'ssh session started');
            pipeSession(channel, started, () => options.onActivity?.(login.environmentId));
          },
          (error: unknown) => {
            log.warn({ what, error: errorMessage(error) }, 'ssh session could not start');
            channel.stderr.write(`warren: ${errorMessage(error)}\r\n`);
            channel.exit(255);
            channel.end();
          },
        );
    };

    session.on('shell', (accept) => run(accept(), ['/bin/sh', '-c', `${USER_SHELL}; exec "$shell"`], 'shell'));
    session.on('exec', (accept, _reject, info) =>
      // Like sshd, the command line goes to the user's shell as `-c`.
      run(accept(), ['/bin/sh', '-c', `${USER_SHELL}; exec "$shell" -c ${quote(info.command)}`], 'exec'),
    );
    session.on('sftp', (accept) => {
      options.onActivity?.(login.environmentId);
      log.info({}, 'sftp session started');
      serveSftp(accept(), {
        backend: options.backend,
        environmentId: login.environmentId,
        logger: log,
        onActivity: () => options.onActivity?.(login.environmentId),
      });
    });
    session.on('subsystem', (_accept, reject) => reject());
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error: Error) => logger.warn({ error: errorMessage(error) }, 'ssh server error'));
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : options.port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  logger.info({ address: `${host}:${port}` }, 'ssh gateway listening');
  return {
    address: `${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const connection of connections) connection.end();
      }),
  };
}

/**
 * Relays a channel to an exec: client data to stdin (EOF ends stdin), stdout and stderr back; when both output
 * streams have ended and the process exited, sends `exit-status` (RFC 4254 §6.10) and closes the channel. A channel
 * closed by the client kills the process.
 */
function pipeSession(channel: ServerChannel, session: ExecSession, onInput: () => void): void {
  let exited = false;
  session.stdin.on('error', () => {});
  channel.on('data', (chunk: Buffer) => {
    onInput();
    session.stdin.write(chunk);
  });
  channel.on('end', () => session.stdin.end());
  channel.on('error', () => {});
  channel.on('close', () => {
    if (!exited) session.kill();
  });
  const ended = (stream: NodeJS.ReadableStream | undefined) =>
    stream === undefined
      ? Promise.resolve()
      : new Promise<void>((resolve) =>
          stream
            .once('end', resolve)
            .once('close', resolve)
            .once('error', () => resolve()),
        );
  session.stdout.pipe(channel, { end: false });
  session.stderr?.pipe(channel.stderr, { end: false });
  void Promise.all([session.exit, ended(session.stdout), ended(session.stderr)]).then(([code]) => {
    exited = true;
    channel.exit(code);
    channel.end();
  });
}
