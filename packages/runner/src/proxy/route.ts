// Which environment and port a proxied request is for: `Host: <port>-<env>.<domain>` or the path form
// `/p/<env>/<port>/...` (for hosts without wildcard DNS).

/** The environment and port a request names, and the path to send to the app. */
export interface ProxyRoute {
  /** Environment name or id, as written in the URL. */
  environment: string;
  port: number;
  /** `host`: `<port>-<env>.<domain>`; `path`: `/p/<env>/<port>/...`. */
  form: 'host' | 'path';
  /** Path and query for the app: the request target, minus the `/p/<env>/<port>` prefix in the path form. */
  path: string;
  /** The stripped prefix (`/p/<env>/<port>`) in the path form, else empty. */
  prefix: string;
  /** Where the auth cookie applies: `/` for the host form, `/p/<env>/` for the path form (RFC 6265 §5.1.4). */
  cookiePath: string;
}

/** A DNS label (RFC 1123) as environment names and ids are: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63. */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const PATH_FORM = /^\/p\/([^/?#]+)\/([0-9]{1,5})(?=[/?#]|$)/;

/**
 * Finds the route of a request from its Host header (port suffix ignored, case-insensitive) and target.
 * The host form wins when the Host header is `<port>-<env>.<domain>`; otherwise the path form is tried.
 * @returns undefined when the request names no environment port (the caller answers 404); the port may be
 *   out of range (1-65535 is checked by the caller so that it can say so).
 */
export function parseProxyRoute(hostHeader: string | undefined, target: string, domain: string): ProxyRoute | undefined {
  const host = stripPort((hostHeader ?? '').toLowerCase());
  const suffix = `.${domain.toLowerCase()}`;
  if (host.endsWith(suffix)) {
    const label = host.slice(0, -suffix.length);
    const match = /^([0-9]{1,5})-(.+)$/.exec(label);
    if (match?.[1] && match[2] && LABEL.test(match[2])) {
      return { environment: match[2], port: Number(match[1]), form: 'host', path: target, prefix: '', cookiePath: '/' };
    }
  }
  const match = PATH_FORM.exec(target);
  if (match?.[1] && match[2] && LABEL.test(match[1])) {
    const prefix = match[0];
    const rest = target.slice(prefix.length);
    return {
      environment: match[1],
      port: Number(match[2]),
      form: 'path',
      path: rest.startsWith('/') ? rest : `/${rest}`,
      prefix,
      cookiePath: `/p/${match[1]}/`,
    };
  }
  return undefined;
}

function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.lastIndexOf(':');
  return colon >= 0 ? host.slice(0, colon) : host;
}

/**
 * Removes the query parameter `name` from a request target (path + query), keeping the others in order.
 * @returns the target unchanged when it has no such parameter.
 */
export function withoutQueryParameter(target: string, name: string): string {
  const question = target.indexOf('?');
  if (question < 0) return target;
  // As URLSearchParams (which queryParameter uses): one more `?` leading the query is not part of the first name.
  const query = target.slice(question + 1);
  const kept = (query.startsWith('?') ? query.slice(1) : query)
    .split('&')
    .filter((pair) => pair !== '' && decodeQueryName(pair.split('=')[0] ?? '') !== name);
  return kept.length > 0 ? `${target.slice(0, question)}?${kept.join('&')}` : target.slice(0, question);
}

/** The first value of query parameter `name` in a request target, decoded; undefined when absent. */
export function queryParameter(target: string, name: string): string | undefined {
  const question = target.indexOf('?');
  if (question < 0) return undefined;
  return new URLSearchParams(target.slice(question + 1)).get(name) ?? undefined;
}

function decodeQueryName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}
