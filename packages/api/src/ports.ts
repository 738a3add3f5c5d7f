// Port URLs: how a port of an environment is addressed through its runner's port proxy, and the answer of
// `POST /api/v1/environments/{id}/ports/{port}/open`.
import { z } from 'zod';

/** Query parameter that carries a port token to the proxy (exchanged for its cookie, never forwarded). */
export const PORT_TOKEN_PARAMETER = 'warren-token';

/** Response of `POST /api/v1/environments/{id}/ports/{port}/open`. */
export const PortOpenSchema = z.object({
  /** The port's URL with a short-lived token (`?warren-token=`); opening it in a browser sets the proxy's cookie. */
  url: z.string(),
  /** When the token in `url` expires (RFC 3339); the cookie it buys lives longer. */
  expiresTime: z.string(),
});
export type PortOpen = z.infer<typeof PortOpenSchema>;

const IP_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/i;

/**
 * The URL of `port` of an environment (its name or id) through a runner's port proxy.
 * `endpoint` is the runner's `status.endpoints.proxy`, e.g. `http://localhost:7082`: its host is the proxy's
 * domain, so the URL is `http://<port>-<env>.localhost:7082/` (host form). When the host is an IP address
 * (no wildcard DNS possible) the path form `http://<ip>:<p>/p/<env>/<port>/` is used.
 * @throws {TypeError} when `endpoint` is not an absolute URL.
 */
export function portUrl(endpoint: string, environment: string, port: number): string {
  const base = new URL(endpoint);
  const path = base.pathname.replace(/\/+$/, '');
  if (IP_ADDRESS.test(base.hostname)) return `${base.protocol}//${base.host}${path}/p/${environment}/${port}/`;
  return `${base.protocol}//${port}-${environment}.${base.host}${path}/`;
}
