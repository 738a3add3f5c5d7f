// Adapter for the `git` tool: clones an environment's repository, non-interactively, and classifies
// failures into errors a user can act on.
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Logger, WarrenError, silentLogger } from '@warren/base';
import { parseGitUrl as validateGitUrl, redactGitUrl } from '@warren/api';
import { type ExecCgroup, ExecError, exec, spawnLogged } from './exec.js';

/** Why a git operation failed; the wire `reason` of a {@link GitError}. */
export type GitErrorReason =
  'RepositoryNotFound' | 'RepositoryAuthRequired' | 'RefNotFound' | 'RepositoryUnreachable' | 'InvalidGitUrl' | 'GitCommandFailed';

/**
 * A git operation failed. `reason` says why; `retryable` is true when the same request may succeed
 * later without a spec change (network trouble, unknown failures), false when the user must act
 * (fix the URL or ref, add credentials). `stderrTail` is git's output, with credentials never in it.
 */
export class GitError extends WarrenError {
  declare readonly reason: GitErrorReason;
  readonly stderrTail: string;

  constructor(
    reason: GitErrorReason,
    code: number,
    message: string,
    options: { retryable: boolean; stderrTail?: string; cause?: unknown },
  ) {
    super(reason, code, message, { cause: options.cause, retryable: options.retryable });
    this.stderrTail = options.stderrTail ?? '';
  }
}

/** The repository does not exist at the URL (or the server hides it). Not retryable. */
export class RepositoryNotFoundError extends GitError {
  constructor(message: string, options: { stderrTail?: string; cause?: unknown } = {}) {
    super('RepositoryNotFound', 404, message, { ...options, retryable: false });
  }
}

/** The server wants credentials, or rejected the ones given. Not retryable. */
export class RepositoryAuthRequiredError extends GitError {
  constructor(message: string, options: { stderrTail?: string; cause?: unknown } = {}) {
    super('RepositoryAuthRequired', 401, message, { ...options, retryable: false });
  }
}

/** The requested branch, tag or commit does not exist in the repository. Not retryable. */
export class RefNotFoundError extends GitError {
  constructor(message: string, options: { stderrTail?: string; cause?: unknown } = {}) {
    super('RefNotFound', 404, message, { ...options, retryable: false });
  }
}

/** The server could not be reached (DNS, connection refused, timeout, TLS, 5xx). Retryable. */
export class RepositoryUnreachableError extends GitError {
  constructor(message: string, options: { stderrTail?: string; cause?: unknown } = {}) {
    super('RepositoryUnreachable', 503, message, { ...options, retryable: true });
  }
}

/** The URL was rejected before running git (see `validateGitUrl`). Not retryable. */
export class InvalidGitUrlError extends GitError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('InvalidGitUrl', 422, message, { ...options, retryable: false });
  }
}

/** Any other failure (disk full, target not empty, unexpected git output). Retryable. */
export class GitCommandError extends GitError {
  constructor(message: string, options: { stderrTail?: string; cause?: unknown } = {}) {
    super('GitCommandFailed', 500, message, { ...options, retryable: true });
  }
}

/**
 * Credentials for the clone. They reach git only through its environment and a temporary file,
 * never through argv (which the exec seam logs) and are not stored in the clone.
 */
export type GitCredentials =
  /** HTTP(S) basic auth; for token auth put the token in `password` (user name as the host wants). */
  | { kind: 'basic'; username: string; password: string }
  /** An OpenSSH private key (PEM/OpenSSH format, unencrypted) for ssh and scp-like URLs. */
  | { kind: 'sshKey'; privateKey: string };

/** One progress report: git's progress line, with phase and percentage when it has them. */
export interface CloneProgress {
  /** The line as git printed it, e.g. `Receiving objects:  45% (450/1000)`. */
  line: string;
  /** e.g. `Receiving objects`, `Resolving deltas`. */
  phase?: string;
  /** 0–100 within `phase`. */
  percent?: number;
}

/** Options of {@link cloneRepository}. */
export interface CloneRepositoryOptions {
  /** Repository URL, checked with `validateGitUrl`. */
  url: string;
  /** Branch, tag, full ref (`refs/pull/1/head`) or commit sha (4–40 hex digits); default: the remote HEAD. */
  ref?: string;
  /** Absolute path to create; it must not exist or be an empty directory. Its parent is created. */
  targetDir: string;
  credentials?: GitCredentials;
  onProgress?: (progress: CloneProgress) => void;
  signal?: AbortSignal;
  /**
   * Allow `file://` URLs. Default false: a file URL would let a user clone any repository on the
   * runner host, including other environments' workspaces. Tests and single-user setups enable it.
   */
  allowFileUrls?: boolean;
  /** known_hosts file for ssh; default the runner user's `~/.ssh/known_hosts`. New hosts are accepted and recorded (`accept-new`). */
  sshKnownHostsFile?: string;
  /** Time limit of each git command in milliseconds; default 30 minutes for the clone, 2 minutes for the others. */
  timeoutMs?: number;
  /** Run git inside this cgroup (Warren's background group, docs/design/0012-io-limits.md); default the runner's own. */
  cgroup?: ExecCgroup;
  logger?: Logger;
}

/** Result of {@link cloneRepository}. */
export interface CloneResult {
  /** Full sha of the checked-out commit; `undefined` for an empty repository (no commits). */
  commit: string | undefined;
  /** What `ref` turned out to be: a branch (checked out as a local branch) or tag/commit/ref (detached HEAD). */
  refKind: 'default' | 'branch' | 'tag' | 'commit' | 'ref';
}

const DEFAULT_CLONE_TIMEOUT_MS = 30 * 60_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 2 * 60_000;

/**
 * Clones `url` into `targetDir` and checks out `ref`.
 *
 * Non-interactive: no terminal prompts (`GIT_TERMINAL_PROMPT=0`), no askpass, no credential helpers,
 * no system or global git config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`), no ssh agent,
 * ssh in `BatchMode`; only the https/http/ssh/git (and, if allowed, file) transports
 * (git-config(1) `protocol.allow`). The repository is first listed with `git ls-remote` (which also
 * tells a branch from a tag from a commit), then cloned into a temporary directory next to
 * `targetDir` and renamed into place, so a failed or cancelled clone leaves nothing behind (and
 * temporary directories a crashed runner left for the same target are removed first; callers must not
 * clone into one target concurrently).
 * For a commit sha the full history is cloned and the commit checked out detached; a full sha that
 * is not reachable from any ref is fetched explicitly (servers may refuse that).
 *
 * @returns the checked-out commit.
 * @throws {InvalidGitUrlError} bad URL, or a `file://` URL without `allowFileUrls`.
 * @throws {RepositoryNotFoundError} / {RepositoryAuthRequiredError} / {RefNotFoundError} /
 *   {RepositoryUnreachableError} / {GitCommandError} as classified from git's output.
 * @throws the signal's reason when `signal` aborts (a cancellation, not a failure).
 */
export async function cloneRepository(options: CloneRepositoryOptions): Promise<CloneResult> {
  const logger = (options.logger ?? silentLogger).child({ component: 'git' });
  const url = options.url;
  let scheme: string;
  try {
    scheme = validateGitUrl(url).scheme;
  } catch (error) {
    throw new InvalidGitUrlError((error as Error).message, { cause: error });
  }
  if (scheme === 'file' && !options.allowFileUrls) {
    throw new InvalidGitUrlError(`file URLs are not allowed on this runner (${redactGitUrl(url)}); use an https or ssh URL`);
  }
  if (options.ref !== undefined) checkRefSyntax(options.ref);

  const targetDir = path.resolve(options.targetDir);
  const parent = path.dirname(targetDir);
  await mkdir(parent, { recursive: true });
  if (!(await isMissingOrEmpty(targetDir))) {
    throw new GitCommandError(`cannot clone into ${targetDir}: the directory exists and is not empty`);
  }

  // A runner that crashed mid-clone left a temporary directory; the reconciler clones one target at a
  // time, so any sibling with our prefix is stale.
  const prefix = `.${path.basename(targetDir)}.clone-`;
  for (const entry of await readdir(parent)) {
    if (entry.startsWith(prefix)) await rm(path.join(parent, entry), { recursive: true, force: true });
  }
  const secrets = await prepareCredentials(options.credentials, url, scheme, options.sshKnownHostsFile);
  const temporary = await mkdtemp(path.join(parent, prefix));
  const git = new GitRunner(secrets.env, scheme === 'file', options, logger);
  try {
    // The default branch needs no ref lookup: one process and one round trip fewer.
    const target =
      options.ref === undefined || options.ref === ''
        ? ({ kind: 'default' } as const)
        : resolveRef(options.ref, await git.lsRemote(url), url);
    let refKind: CloneResult['refKind'] = 'default';
    if (target.kind === 'branch' || target.kind === 'tag') {
      await git.clone(url, temporary, ['--branch', target.name]);
      refKind = target.kind;
    } else if (target.kind === 'default') {
      await git.clone(url, temporary, []);
    } else {
      await git.clone(url, temporary, ['--no-checkout']);
      let commit = target.kind === 'commit' ? await git.findCommit(temporary, target.name) : undefined;
      if (commit === undefined && target.kind === 'commit' && target.name.length < 40) {
        // only a full sha can be fetched by id (git-fetch(1)); an abbreviation must be in the clone
        throw new RefNotFoundError(
          `ref "${options.ref ?? ''}" is not a branch, tag or commit of ${redactGitUrl(url)} (or it abbreviates several commits); ` +
            'fix spec.source.git.ref',
        );
      }
      if (commit === undefined) {
        // A full sha (or a ref outside heads/tags) is not in the clone: ask the server for it directly.
        await git.fetch(temporary, url, target.name, options.ref ?? '');
        commit = 'FETCH_HEAD';
      }
      await git.run(['checkout', '--quiet', '--detach', commit, '--'], temporary, url, options.timeoutMs ?? DEFAULT_CLONE_TIMEOUT_MS);
      refKind = target.kind;
    }
    const commit = await git.headCommit(temporary);
    await rename(temporary, targetDir);
    logger.info({ url: redactGitUrl(url), ref: options.ref, commit, targetDir }, 'repository cloned');
    return { commit, refKind };
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  } finally {
    await secrets.cleanup();
  }
}

/**
 * Reads the commit HEAD points at from a fresh clone's files, without starting git: `.git/HEAD` holds a sha
 * (detached) or `ref: <name>`, whose sha is in the loose ref file or in `packed-refs` (gitrepository-layout(5)).
 * @returns the 40- (or 64-) hex sha, or `undefined` when the layout is anything else (the caller asks git).
 */
export async function readHeadCommit(directory: string): Promise<string | undefined> {
  const gitDir = path.join(directory, '.git');
  const sha = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
  const head = (await readFile(path.join(gitDir, 'HEAD'), 'utf8').catch(() => '')).trim();
  if (sha.test(head)) return head;
  const ref = /^ref: (refs\/[^\s]+)$/.exec(head)?.[1];
  if (ref === undefined || ref.includes('..')) return undefined;
  const loose = (await readFile(path.join(gitDir, ref), 'utf8').catch(() => '')).trim();
  if (sha.test(loose)) return loose;
  const packed = await readFile(path.join(gitDir, 'packed-refs'), 'utf8').catch(() => '');
  for (const line of packed.split('\n')) {
    const [value, name] = line.split(' ');
    if (name === ref && value !== undefined && sha.test(value)) return value;
  }
  return undefined;
}

/** Lines of `git ls-remote`: ref name → sha. */
type RemoteRefs = Map<string, string>;

type RefTarget = { kind: 'default' } | { kind: 'branch' | 'tag' | 'commit' | 'ref'; name: string };

function resolveRef(ref: string | undefined, refs: RemoteRefs, url: string): RefTarget {
  if (ref === undefined || ref === '') return { kind: 'default' };
  if (refs.has(`refs/heads/${ref}`)) return { kind: 'branch', name: ref };
  if (refs.has(`refs/tags/${ref}`)) return { kind: 'tag', name: ref };
  if (ref.startsWith('refs/heads/') && refs.has(ref)) return { kind: 'branch', name: ref.slice('refs/heads/'.length) };
  if (ref.startsWith('refs/tags/') && refs.has(ref)) return { kind: 'tag', name: ref.slice('refs/tags/'.length) };
  if (ref.startsWith('refs/') && refs.has(ref)) return { kind: 'ref', name: ref };
  if (/^[0-9a-f]{4,40}$/i.test(ref)) return { kind: 'commit', name: ref.toLowerCase() };
  throw new RefNotFoundError(refNotFoundMessage(ref, refs, url));
}

function refNotFoundMessage(ref: string, refs: RemoteRefs, url: string): string {
  const branches = [...refs.keys()].filter((name) => name.startsWith('refs/heads/')).map((name) => name.slice(11));
  const shown = branches.slice(0, 10).join(', ');
  const more = branches.length > 10 ? `, … (${branches.length} branches)` : '';
  return (
    `ref "${ref}" is not a branch, tag or commit of ${redactGitUrl(url)}; ` +
    (branches.length > 0 ? `its branches are: ${shown}${more}. ` : 'the repository has no branches. ') +
    'Fix spec.source.git.ref.'
  );
}

/** Rejects refs git would read as options or that cannot be ref names or shas (git-check-ref-format(1)). */
function checkRefSyntax(ref: string): void {
  // eslint-disable-next-line no-control-regex
  if (ref.startsWith('-') || /[\s\u0000-\u001f\u007f~^:?*[\\]|\.\.|@\{/.test(ref) || ref.length > 1024) {
    throw new RefNotFoundError(`ref ${JSON.stringify(ref)} is not a valid branch, tag or commit name; fix spec.source.git.ref`);
  }
}

/** Runs git with the isolated environment and classifies failures. */
class GitRunner {
  private readonly env: NodeJS.ProcessEnv;
  private readonly baseArgs: string[];

  constructor(
    credentialEnv: Record<string, string>,
    allowFile: boolean,
    private readonly options: CloneRepositoryOptions,
    private readonly logger: Logger,
  ) {
    this.env = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: process.env.HOME ?? tmpdir(),
      LANG: 'C',
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GCM_INTERACTIVE: 'never',
      GIT_SSH_COMMAND: 'ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=30',
      ...credentialEnv,
    };
    this.baseArgs = [
      'git',
      '-c',
      'credential.helper=',
      '-c',
      'core.askPass=',
      '-c',
      'protocol.allow=never',
      '-c',
      'protocol.https.allow=always',
      '-c',
      'protocol.http.allow=always',
      '-c',
      'protocol.ssh.allow=always',
      '-c',
      'protocol.git.allow=always',
      '-c',
      `protocol.file.allow=${allowFile ? 'always' : 'never'}`,
      '-c',
      'http.lowSpeedLimit=1000',
      '-c',
      'http.lowSpeedTime=60',
    ];
  }

  async lsRemote(url: string): Promise<RemoteRefs> {
    const result = await this.run(['ls-remote', '--', url], undefined, url);
    const refs: RemoteRefs = new Map();
    for (const line of result.split('\n')) {
      const [sha, name] = line.split('\t');
      if (sha && name) refs.set(name, sha);
    }
    return refs;
  }

  async clone(url: string, directory: string, extra: string[]): Promise<void> {
    await this.stream(['clone', '--progress', ...extra, '--', url, directory], undefined, url);
  }

  async fetch(directory: string, url: string, what: string, ref: string): Promise<void> {
    try {
      await this.stream(['fetch', '--progress', '--', 'origin', what], directory, url);
    } catch (error) {
      if (error instanceof GitCommandError || error instanceof RefNotFoundError) {
        throw new RefNotFoundError(
          `ref "${ref}" is not a branch, tag or commit of ${redactGitUrl(url)} (or the server does not serve commits ` +
            'that no branch or tag contains); fix spec.source.git.ref',
          { stderrTail: error.stderrTail, cause: error },
        );
      }
      throw error;
    }
  }

  /** The full sha `name` abbreviates in the clone, or `undefined` when it names no commit there (or is ambiguous). */
  async findCommit(directory: string, name: string): Promise<string | undefined> {
    const result = await exec([...this.baseArgs, 'rev-parse', '--verify', '--quiet', '--end-of-options', `${name}^{commit}`], {
      cwd: directory,
      env: this.env,
      okCodes: [0, 1, 128],
      signal: this.options.signal,
      timeoutMs: DEFAULT_COMMAND_TIMEOUT_MS,
      logger: this.logger,
    });
    const sha = result.stdout.trim();
    return result.code === 0 && /^[0-9a-f]{40,64}$/.test(sha) ? sha : undefined;
  }

  async headCommit(directory: string): Promise<string | undefined> {
    const fromFiles = await readHeadCommit(directory);
    if (fromFiles !== undefined) return fromFiles;
    const result = await exec([...this.baseArgs, 'rev-parse', '--verify', '--quiet', 'HEAD'], {
      cwd: directory,
      env: this.env,
      okCodes: [0, 1, 128],
      signal: this.options.signal,
      timeoutMs: DEFAULT_COMMAND_TIMEOUT_MS,
      logger: this.logger,
    });
    return result.code === 0 ? result.stdout.trim() : undefined;
  }

  /** Runs a short git command through {@link exec}; returns stdout. */
  async run(args: string[], cwd?: string, url?: string, timeoutMs = this.options.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS): Promise<string> {
    try {
      const result = await exec([...this.baseArgs, ...args], {
        cwd,
        env: this.env,
        signal: this.options.signal,
        timeoutMs,
        ...(this.options.cgroup ? { cgroup: this.options.cgroup } : {}),
        logger: this.logger,
      });
      return result.stdout;
    } catch (error) {
      if (this.options.signal?.aborted || !(error instanceof ExecError)) throw error;
      throw classifyGitFailure(error.stderrTail, url ?? this.options.url, this.options.ref, error);
    }
  }

  /** Runs a long git command through {@link spawnLogged}, reporting progress lines as they come. */
  private stream(args: string[], cwd: string | undefined, url: string): Promise<void> {
    const argv = [...this.baseArgs, ...args];
    const signal = this.options.signal;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const child = spawnLogged(argv, {
        cwd,
        env: this.env,
        stdio: ['ignore', 'ignore', 'pipe'],
        signal,
        timeout: this.options.timeoutMs ?? DEFAULT_CLONE_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        ...(this.options.cgroup ? { cgroup: this.options.cgroup } : {}),
        logger: this.logger,
      });
      let stderr = '';
      let pending = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-8192);
        pending += chunk;
        const parts = pending.split(/[\r\n]/);
        pending = parts.pop() ?? '';
        for (const line of parts) this.report(line);
      });
      child.on('error', () => {}); // reported through 'close' with a null code
      child.on('close', (code) => {
        if (pending) this.report(pending);
        if (signal?.aborted) {
          reject(signal.reason as Error);
          return;
        }
        if (code === 0) {
          resolve();
          return;
        }
        const tail = stderr
          .split(/\r|\n/)
          .filter(
            (line) =>
              line.trim() !== '' &&
              !/^(Receiving|Resolving|Counting|Compressing|remote: (Counting|Compressing|Enumerating|Total))/.test(line),
          )
          .join('\n');
        this.logger.warn({ argv: args.slice(0, 2), code, stderrTail: tail }, 'git failed');
        reject(classifyGitFailure(tail, url, this.options.ref, new ExecError(argv, code, tail, '')));
      });
    });
  }

  private report(raw: string): void {
    const line = raw.trim();
    if (line === '' || !this.options.onProgress) return;
    const match = /^(?:remote: )?([A-Za-z][A-Za-z ]+):\s+(\d{1,3})%/.exec(line);
    const progress: CloneProgress = match ? { line, phase: match[1]!, percent: Number(match[2]) } : { line };
    try {
      this.options.onProgress(progress);
    } catch (error) {
      this.logger.warn({ error: (error as Error).message }, 'clone progress callback failed');
    }
  }
}

/**
 * Classifies git's stderr (C locale) into a {@link GitError} whose message says what failed and what
 * to do. Patterns come from git 2.x messages for the http, ssh, git and file transports.
 * @param stderr git's stderr (tail).
 * @param url the repository URL, shown redacted.
 * @param ref the requested ref, for ref errors.
 */
export function classifyGitFailure(stderr: string, url: string, ref: string | undefined, cause?: unknown): GitError {
  const shown = redactGitUrl(url);
  const detail = lastLines(stderr);
  const options = { stderrTail: stderr, cause };
  if (
    /could not read (Username|Password)|Authentication failed|terminal prompts disabled|returned error: 40[13]|Permission denied \(|Permission denied, please try again|HTTP Basic: Access denied|Invalid username or (password|token)/i.test(
      stderr,
    )
  ) {
    return new RepositoryAuthRequiredError(
      `${shown} requires credentials, or rejected the ones given (for some hosts this also means the repository does not exist); ` +
        `add a credential with access to it or check the URL. git said: ${detail}`,
      options,
    );
  }
  if (
    /does not appear to be a git repository|repository '.*' not found|Repository not found|returned error: 404|not found: did you run git update-server-info|No such file or directory.*repository|project you were looking for could not be found/i.test(
      stderr,
    )
  ) {
    return new RepositoryNotFoundError(`no repository at ${shown}; check spec.source.git.url. git said: ${detail}`, options);
  }
  if (
    /Remote branch .* not found in upstream|couldn't find remote ref|did not match any file|not a valid object name|unknown revision|Needed a single revision|not our ref|upload-pack: not our ref/i.test(
      stderr,
    )
  ) {
    return new RefNotFoundError(`ref "${ref ?? ''}" was not found in ${shown}; fix spec.source.git.ref. git said: ${detail}`, options);
  }
  if (
    /Could not resolve host|Could not resolve hostname|Failed to connect|Connection refused|Connection timed out|timed out|Network is unreachable|No route to host|Connection reset|Couldn't connect to server|SSL|TLS|certificate|Host key verification failed|returned error: 5\d\d|unable to access|early EOF|remote end hung up|Temporary failure in name resolution|Name or service not known/i.test(
      stderr,
    )
  ) {
    return new RepositoryUnreachableError(
      `cannot reach ${shown}; check the host name and that the git server is up and reachable from the runner (Warren will retry). git said: ${detail}`,
      options,
    );
  }
  return new GitCommandError(`git failed for ${shown}: ${detail || 'no error output'}`, options);
}

/** The lines that name the problem: git's `fatal:`/`error:` lines and ssh's own, else the last lines. */
function lastLines(stderr: string): string {
  const lines = stderr
    .split(/\r|\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('Cloning into'));
  const telling = lines.filter((line) => /^(fatal|error|ERROR|remote: (fatal|error)|ssh):/.test(line));
  return (telling.length > 0 ? telling.slice(0, 2) : lines.slice(-3)).join(' / ').slice(0, 600);
}

async function isMissingOrEmpty(directory: string): Promise<boolean> {
  try {
    return (await readdir(directory)).length === 0;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/**
 * Turns credentials into git environment variables (git-config(1) `GIT_CONFIG_COUNT`), scoped to the
 * URL's origin with `http.<url>.extraHeader` so redirects to other hosts do not receive them.
 */
async function prepareCredentials(
  credentials: GitCredentials | undefined,
  url: string,
  scheme: string,
  knownHostsFile: string | undefined,
): Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }> {
  const sshBase = ['ssh', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=accept-new', '-o', 'ConnectTimeout=30'];
  if (knownHostsFile) sshBase.push('-o', `UserKnownHostsFile=${quoteShell(knownHostsFile)}`);
  const env: Record<string, string> = { GIT_SSH_COMMAND: sshBase.join(' ') };
  if (!credentials) return { env, cleanup: async () => {} };
  if (credentials.kind === 'basic') {
    if (scheme !== 'https' && scheme !== 'http') {
      throw new InvalidGitUrlError(`basic credentials need an http(s) URL, not ${redactGitUrl(url)}`);
    }
    const origin = new URL(url).origin;
    const token = Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64');
    Object.assign(env, {
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: `http.${origin}/.extraHeader`,
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${token}`,
    });
    return { env, cleanup: async () => {} };
  }
  if (scheme !== 'ssh') throw new InvalidGitUrlError(`an ssh key needs an ssh URL, not ${redactGitUrl(url)}`);
  const directory = await mkdtemp(path.join(tmpdir(), 'warren-git-key-'));
  const keyFile = path.join(directory, 'id');
  const key = credentials.privateKey.endsWith('\n') ? credentials.privateKey : `${credentials.privateKey}\n`;
  await writeFile(keyFile, key, { mode: 0o600 });
  env.GIT_SSH_COMMAND = [...sshBase, '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-i', quoteShell(keyFile)].join(' ');
  return { env, cleanup: () => rm(directory, { recursive: true, force: true }) };
}

/** Quotes a path for GIT_SSH_COMMAND, which git runs through the shell. */
function quoteShell(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}
