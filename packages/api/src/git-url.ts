// Validation of git repository URLs given to `spec.source.git.url`, shared by the server (reject early
// with 422) and the runner (defence in depth before spawning git).

/**
 * Checks that `url` is a git URL Warren may clone: `https://`, `http://`, `ssh://`, `git://`, `file://`
 * or scp-like `user@host:path` (git-clone(1) "GIT URLS").
 * @returns undefined when valid, else a sentence saying what is wrong.
 * Rejected: whitespace or control characters, a leading `-` (would be read as an option), the `ext::`
 * and other `<transport>::` remote helpers (git-remote-ext(1) runs arbitrary commands), and URLs
 * carrying no host or path.
 */
export function validateGitUrl(url: string): string | undefined {
  if (url.length === 0) return 'must not be empty';
  // eslint-disable-next-line no-control-regex -- control characters are exactly what must be rejected
  if (/[\s\u0000-\u001f\u007f]/.test(url)) return 'must not contain whitespace or control characters';
  if (url.startsWith('-')) return 'must not start with "-"';
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) return 'remote-helper transports ("<transport>::") are not allowed';
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined) {
    if (!['https', 'http', 'ssh', 'git', 'file'].includes(scheme)) {
      return `scheme "${scheme}" is not supported; use https, http, ssh, git or file`;
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return 'is not a valid URL';
    }
    if (scheme !== 'file' && parsed.hostname === '') return 'must name a host';
    if (parsed.pathname === '' || parsed.pathname === '/') return 'must name a repository path';
    return undefined;
  }
  // scp-like syntax: [user@]host:path, where host has no slash before the colon.
  const scp = /^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(.+)$/.exec(url);
  if (scp && !scp[1]!.includes('/')) return undefined;
  return 'must be a git URL such as https://host/owner/repo.git or git@host:owner/repo.git';
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
