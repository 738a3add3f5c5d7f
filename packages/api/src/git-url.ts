// Validation of git repository URLs given to `spec.source.git.url`, shared by the server (reject early with
// 422), the CLI and the runner (defence in depth before spawning git). No node:* imports.
import { InvalidError } from '@warren/base';

/** The transports Warren lets `git` use. `git+ssh`/`ssh+git` are reported as `ssh`. */
export type GitUrlScheme = 'https' | 'http' | 'ssh' | 'git' | 'file';

/** A URL that passed {@link parseGitUrl}. */
export interface ParsedGitUrl {
  /** The transport; scp-like URLs (`git@host:path`) are `ssh`. */
  scheme: GitUrlScheme;
  /** True for the scp-like form `[user@]host:path`. */
  scpLike: boolean;
  /** Host name (lower-case for URL forms); empty for `file:` URLs. */
  host: string;
  /** Path part as written, e.g. `/org/repo.git` or `org/repo.git` for scp-like URLs. */
  path: string;
  /** Last path segment without a trailing `.git`, e.g. `repo`; the default workspace folder name. */
  repositoryName: string;
}

/** Longest URL accepted; longer ones are almost certainly not a repository address. */
export const MAX_GIT_URL_LENGTH = 2048;

const SCHEMES: Record<string, GitUrlScheme> = {
  'https:': 'https',
  'http:': 'http',
  'ssh:': 'ssh',
  'git+ssh:': 'ssh',
  'ssh+git:': 'ssh',
  'git:': 'git',
  'file:': 'file',
};

/**
 * Validates a git repository URL syntactically (no network access).
 *
 * Accepted forms (git-clone(1) "GIT URLS"): `https://`, `http://`, `ssh://` (also `git+ssh://`),
 * `git://`, `file://` URLs and the scp-like `[user@]host:path`.
 * Rejected: empty or longer than {@link MAX_GIT_URL_LENGTH}; whitespace or control characters;
 * a leading `-` (it would be read as an option by git or ssh, CVE-2017-1000117); a host or user
 * starting with `-`; remote-helper syntax `transport::address` (e.g. `ext::sh -c ...` runs commands,
 * see gitremote-helpers(7)); other schemes; plain local paths (use `file://`); a password inside an
 * http(s) URL (credentials belong in a secret: the URL is stored in the resource and shown in logs).
 *
 * @param url the URL as the user wrote it.
 * @param field JSON path used in the error's `causes`, default `spec.source.git.url`.
 * @returns the parsed URL.
 * @throws {InvalidError} with reason `InvalidGitUrl` naming what is wrong.
 */
export function parseGitUrl(url: string, field = 'spec.source.git.url'): ParsedGitUrl {
  const fail = (why: string): never => {
    const message = `invalid git URL ${JSON.stringify(truncate(url))}: ${why}`;
    throw new InvalidError(message, [{ field, message: why }], 'InvalidGitUrl');
  };
  if (url.length === 0) fail('it is empty');
  if (url.length > MAX_GIT_URL_LENGTH) fail(`it is longer than ${MAX_GIT_URL_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what must be rejected
  if (/[\s\u0000-\u001f\u007f]/.test(url)) fail('it contains whitespace or control characters');
  if (url.startsWith('-')) fail('it starts with "-", which git would read as an option');
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) {
    fail('remote-helper transports ("<transport>::<address>", such as ext::) are not allowed');
  }

  const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  if (schemeMatch) {
    const scheme = SCHEMES[`${schemeMatch[1]!.toLowerCase()}:`];
    if (!scheme) return fail(`the scheme "${schemeMatch[1]}" is not supported; use https, http, ssh, git or file`);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return fail('it cannot be parsed as a URL');
    }
    const host = parsed.hostname.toLowerCase();
    const path = decodeSafe(parsed.pathname);
    if (scheme === 'file') {
      if (host !== '' && host !== 'localhost') fail('a file URL must not name a host');
      if (path === '' || path === '/') fail('the path is empty');
      return { scheme, scpLike: false, host: '', path, repositoryName: repositoryName(path, fail) };
    }
    if (host === '') fail('the host is empty');
    if (host.startsWith('-')) fail('the host starts with "-", which ssh would read as an option');
    if (parsed.username.startsWith('-')) fail('the user name starts with "-"');
    if ((scheme === 'https' || scheme === 'http') && parsed.password !== '') {
      fail('it contains a password; give credentials separately, not in the URL');
    }
    if (path === '' || path === '/') fail('the repository path is empty');
    return { scheme, scpLike: false, host, path, repositoryName: repositoryName(path, fail) };
  }

  // scp-like syntax: git treats "host:path" as ssh only when no slash comes before the first colon
  // (git-clone(1) "GIT URLS"); anything else without a scheme is a local path.
  const colon = url.indexOf(':');
  const slash = url.indexOf('/');
  if (colon <= 0 || (slash !== -1 && slash < colon)) {
    fail('local paths are not allowed; use a URL such as https://host/org/repo.git (or file:///path)');
  }
  const authority = url.slice(0, colon);
  const path = url.slice(colon + 1);
  const at = authority.lastIndexOf('@');
  const user = at === -1 ? '' : authority.slice(0, at);
  const host = at === -1 ? authority : authority.slice(at + 1);
  if (host === '') fail('the host is empty');
  if (host.startsWith('-')) fail('the host starts with "-", which ssh would read as an option');
  if (user.startsWith('-')) fail('the user name starts with "-"');
  if (!/^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/.test(host)) fail(`the host "${host}" is not a valid host name`);
  if (path === '' || path === '/') fail('the repository path is empty');
  return { scheme: 'ssh', scpLike: true, host: host.toLowerCase(), path, repositoryName: repositoryName(path, fail) };
}

/**
 * Returns `url` with any password in its user-info replaced by `***`, for log lines and messages.
 * Strings that are not URLs are returned unchanged.
 */
export function redactGitUrl(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/, '$1:***@');
}

function repositoryName(path: string, fail: (why: string) => never): string {
  const segments = path.split('/').filter((segment) => segment !== '');
  const last = segments.at(-1) ?? '';
  const name = last.replace(/\.git$/, '');
  if (name === '' || name === '.' || name === '..') return fail('the repository path has no name');
  return name;
}

function decodeSafe(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/**
 * Like {@link parseGitUrl} but returns the problem instead of throwing.
 * @returns undefined when `url` is acceptable, else a sentence saying what is wrong (for `causes[].message`).
 */
export function validateGitUrl(url: string): string | undefined {
  try {
    parseGitUrl(url);
    return undefined;
  } catch (error) {
    if (error instanceof InvalidError) return error.causes[0]?.message ?? error.message;
    throw error;
  }
}

/**
 * Splits `<git-url>[#ref]` as the CLI accepts it into url and optional ref.
 * The `#` fragment form follows the Dev Container CLI and Docker build contexts.
 */
export function splitGitUrlRef(value: string): { url: string; ref?: string } {
  const hash = value.lastIndexOf('#');
  if (hash <= 0) return { url: value };
  const ref = value.slice(hash + 1);
  return ref ? { url: value.slice(0, hash), ref } : { url: value.slice(0, hash) };
}

/** The repository's base name without `.git` (`https://h/o/my-app.git` → `my-app`), for names and paths. */
export function repositoryBasename(url: string): string {
  const trimmed = url.replace(/[#?].*$/, '').replace(/\/+$/, '');
  const last = trimmed.split(/[/:]/).pop() ?? 'workspace';
  return last.replace(/\.git$/, '') || 'workspace';
}
