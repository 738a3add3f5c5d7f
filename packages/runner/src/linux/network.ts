// Per-environment networking: a network namespace joined to the host by a veth pair with a /30,
// a default route via the host side, and the resolv.conf the environment should mount.
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { type Logger, WarrenError, errorMessage, silentLogger } from '@warren/base';
import { exec } from './exec.js';
import { KERNEL_OBJECT_PREFIX, type SlotInfo, slotInfo } from './slots.js';

/** Setting up or tearing down an environment's network failed. HTTP 500; the reconciler retries. */
export class NetworkError extends WarrenError {
  constructor(
    message: string,
    readonly slot: number,
    options?: { cause?: unknown },
  ) {
    super('NetworkSetupFailed', 500, message, options);
  }
}

/** What exists for a slot, as observed by {@link inspectNetwork}. */
export interface NetworkState {
  /** `/run/netns/warren-<k>` is listed by `ip netns list` and can be entered. */
  netns: boolean;
  /** `warren<k>h` exists in the host namespace. */
  hostLink: boolean;
  /** `warren<k>c` exists in the namespace and is the veth peer of `warren<k>h`. */
  pairedLink: boolean;
  /** Everything {@link setupNetwork} configures is in place (links up, addresses, lo up, default route). */
  complete: boolean;
}

/** Result of {@link setupNetwork}: the slot's derived names and addresses, and whether anything changed. */
export interface NetworkSetup extends SlotInfo {
  /** False when an existing complete setup was found and left alone. */
  changed: boolean;
}

const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

interface IpAddressInfo {
  family?: string;
  local?: string;
  prefixlen?: number;
}
interface IpLink {
  ifindex?: number;
  ifname?: string;
  flags?: string[];
  link_index?: number;
  addr_info?: IpAddressInfo[];
}
interface IpRoute {
  dst?: string;
  gateway?: string;
  dev?: string;
}

function parseJson<T>(stdout: string): T[] {
  // `ip -j` prints nothing at all for an empty netns list.
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as T[]);
}

function hasAddress(link: IpLink | undefined, address: string, prefixLength: number): boolean {
  return (link?.addr_info ?? []).some((info) => info.family === 'inet' && info.local === address && info.prefixlen === prefixLength);
}

function isUp(link: IpLink | undefined): boolean {
  return link?.flags?.includes('UP') ?? false;
}

/** Where `ip netns` pins named network namespaces (ip-netns(8)). */
const NETNS_RUN_DIR = '/run/netns';

/**
 * Names of the named network namespaces: the entries of /run/netns, which is all `ip netns list` reads
 * (ip-netns(8)), without starting a process.
 */
async function netnsNames(_logger: Logger): Promise<string[]> {
  try {
    return (await readdir(NETNS_RUN_DIR)).filter((name) => !name.startsWith('.'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function hostLinks(logger: Logger): Promise<IpLink[]> {
  const { stdout } = await exec(['ip', '-j', 'address', 'show'], { logger });
  return parseJson<IpLink>(stdout);
}

/** The slot's host link with its addresses, or undefined when there is none (one link, not every veth of the host). */
async function readHostLink(info: SlotInfo, logger: Logger): Promise<IpLink | undefined> {
  const name = info.hostInterface;
  const result = await exec(['ip', '-j', 'address', 'show', 'dev', name], { logger, okCodes: [0, 1] });
  if (result.code === 1) {
    if (/does not exist/i.test(result.stderr)) return undefined;
    throw new NetworkError(`ip address show dev ${name} failed: ${result.stderr.trim()}`, info.slot);
  }
  return parseJson<IpLink>(result.stdout).find((link) => link.ifname === name);
}

/** The links and default routes inside a slot's namespace (`ip -n <ns> -j -batch`: one JSON array per line). */
async function readNamespace(info: SlotInfo, logger: Logger): Promise<{ inner: IpLink[]; routes: IpRoute[]; netnsBroken: boolean }> {
  try {
    const { stdout } = await exec(['ip', '-n', info.netnsName, '-j', '-batch', '-'], {
      input: 'address show\nroute show default\n',
      logger,
    });
    const [addresses = '', defaultRoutes = ''] = stdout.split('\n').filter((line) => line.trim() !== '');
    return { inner: parseJson<IpLink>(addresses), routes: parseJson<IpRoute>(defaultRoutes), netnsBroken: false };
  } catch (error) {
    logger.warn({ netns: info.netnsName, error: errorMessage(error) }, 'network namespace cannot be entered');
    return { inner: [], routes: [], netnsBroken: true };
  }
}

interface Observed {
  state: NetworkState;
  hostLink?: IpLink;
  /** Namespace exists but `ip -n` cannot enter it (a stale /run/netns entry). */
  netnsBroken: boolean;
  /** A link named warren<k>c exists in the namespace but is not the peer of warren<k>h. */
  strayEnvironmentLink: boolean;
}

async function observe(info: SlotInfo, logger: Logger, freshNamespace: boolean): Promise<Observed> {
  // The namespace list is a directory read; the host's links and the namespace's links and default route
  // are read at the same time, the latter two by one `ip -batch` (each `ip` process costs ~10 ms).
  const netns = (await netnsNames(logger)).includes(info.netnsName);
  const [hostLink, innerState] = await Promise.all([
    readHostLink(info, logger),
    netns && !freshNamespace
      ? readNamespace(info, logger)
      : Promise.resolve({ inner: [] as IpLink[], routes: [] as IpRoute[], netnsBroken: false }),
  ]);
  const { inner, routes, netnsBroken } = innerState;
  const environmentLink = inner.find((link) => link.ifname === info.environmentInterface);
  const pairedLink = environmentLink !== undefined && hostLink?.ifindex !== undefined && environmentLink.link_index === hostLink.ifindex;
  const complete =
    netns &&
    !netnsBroken &&
    pairedLink &&
    isUp(hostLink) &&
    hasAddress(hostLink, info.hostAddress, info.prefixLength) &&
    isUp(environmentLink) &&
    hasAddress(environmentLink, info.environmentAddress, info.prefixLength) &&
    isUp(inner.find((link) => link.ifname === 'lo')) &&
    routes.some((route) => route.dst === 'default' && route.gateway === info.hostAddress && route.dev === info.environmentInterface);
  return {
    state: { netns: netns && !netnsBroken, hostLink: hostLink !== undefined, pairedLink, complete },
    ...(hostLink ? { hostLink } : {}),
    netnsBroken,
    strayEnvironmentLink: environmentLink !== undefined && !pairedLink,
  };
}

/**
 * Reports which parts of a slot's network exist (reads only).
 * @throws {InvalidError} for an out-of-range slot; {@link ExecError} when `ip` fails.
 */
export async function inspectNetwork(slot: number, options: { logger?: Logger } = {}): Promise<NetworkState> {
  return (await observe(slotInfo(slot), options.logger ?? silentLogger, false)).state;
}

/**
 * Sets `net.ipv4.ip_forward` to 1 unless it already is (Documentation/networking/ip-sysctl.rst).
 * @returns whether the value was changed.
 * @throws {Error} (errno) when /proc/sys is not writable.
 */
export async function enableIpForwarding(options: { logger?: Logger } = {}): Promise<boolean> {
  if ((await readFile(IP_FORWARD, 'utf8')).trim() === '1') return false;
  await writeFile(IP_FORWARD, '1\n');
  options.logger?.info({}, 'ip forwarding enabled');
  return true;
}

/**
 * Creates the slot's network, or repairs a half-made one, and enables IPv4 forwarding.
 *
 * Host namespace: veth `warren<k>h` with `10.88.x.(4k+1)/30`, up. Namespace `warren-<k>` (ip-netns(8),
 * pinned at `/run/netns/warren-<k>`): veth `warren<k>c` with `.2/30`, up, `lo` up, default route via `.1`.
 * Idempotent: a complete setup is left untouched (`changed: false`); otherwise missing pieces are added
 * with `ip -batch` using `addr replace`/`route replace`, and a veth whose peer is gone or foreign is
 * recreated. An existing namespace is kept (a running container may already be inside it) unless it
 * cannot be entered, in which case it is deleted and created again.
 * @param options.freshNamespace the caller has just created the (pinned) namespace, so it holds nothing yet:
 *   its links and routes are not read (two `ip` processes fewer).
 * @throws {NetworkError} wrapping the failing `ip` call.
 */
export async function setupNetwork(slot: number, options: { logger?: Logger; freshNamespace?: boolean } = {}): Promise<NetworkSetup> {
  const info = slotInfo(slot);
  const logger = (options.logger ?? silentLogger).child({ component: 'network', slot });
  try {
    await enableIpForwarding({ logger });
    const observed = await observe(info, logger, options.freshNamespace ?? false);
    if (observed.state.complete) return { ...info, changed: false };
    if (observed.netnsBroken) await exec(['ip', 'netns', 'delete', info.netnsName], { logger });
    if (!observed.state.netns) {
      await exec(['ip', 'netns', 'add', info.netnsName], { logger });
    }
    const hostBatch: string[] = [];
    if (observed.strayEnvironmentLink && observed.state.netns) {
      await exec(['ip', '-n', info.netnsName, 'link', 'delete', info.environmentInterface], { logger });
    }
    if (!observed.state.pairedLink || !observed.state.netns) {
      if (observed.state.hostLink) hostBatch.push(`link delete ${info.hostInterface}`);
      hostBatch.push(`link add ${info.hostInterface} type veth peer name ${info.environmentInterface} netns ${info.netnsName}`);
    }
    hostBatch.push(
      `address replace ${info.hostAddress}/${info.prefixLength} dev ${info.hostInterface}`,
      `link set ${info.hostInterface} up`,
    );
    await exec(['ip', '-batch', '-'], { input: `${hostBatch.join('\n')}\n`, logger });
    const innerBatch = [
      `address replace ${info.environmentAddress}/${info.prefixLength} dev ${info.environmentInterface}`,
      `link set ${info.environmentInterface} up`,
      `link set lo up`,
      `route replace default via ${info.hostAddress} dev ${info.environmentInterface}`,
    ];
    await exec(['ip', '-n', info.netnsName, '-batch', '-'], { input: `${innerBatch.join('\n')}\n`, logger });
    logger.info({ netns: info.netnsName, repaired: observed.state.netns || observed.state.hostLink }, 'network set up');
    return { ...info, changed: true };
  } catch (error) {
    throw new NetworkError(`setting up network for slot ${slot} failed: ${errorMessage(error)}`, slot, {
      cause: error,
    });
  }
}

/**
 * Removes the slot's veth pair and namespace (idempotent; missing objects are fine).
 * The host side is deleted explicitly because a namespace still held by a process outlives `ip netns
 * delete`, and so would its veth.
 * @returns whether anything was removed.
 * @throws {NetworkError} wrapping the failing `ip` call.
 */
export async function teardownNetwork(slot: number, options: { logger?: Logger } = {}): Promise<boolean> {
  const info = slotInfo(slot);
  const logger = (options.logger ?? silentLogger).child({ component: 'network', slot });
  try {
    let removed = false;
    if ((await hostLinks(logger)).some((link) => link.ifname === info.hostInterface)) {
      await exec(['ip', 'link', 'delete', info.hostInterface], { logger });
      removed = true;
    }
    if ((await netnsNames(logger)).includes(info.netnsName)) {
      await exec(['ip', 'netns', 'delete', info.netnsName], { logger });
      removed = true;
    }
    if (removed) logger.info({ netns: info.netnsName }, 'network torn down');
    return removed;
  } catch (error) {
    throw new NetworkError(`tearing down network for slot ${slot} failed: ${errorMessage(error)}`, slot, {
      cause: error,
    });
  }
}

/** Warren-prefixed kernel network objects visible from the host namespace. */
export interface NetworkObjects {
  /** Namespace names under /run/netns starting with `warren`. */
  netns: string[];
  /** Host namespace link names starting with `warren` (environment-side links live inside the namespaces). */
  links: string[];
}

/**
 * Lists warren-prefixed namespaces and host links, for leak checks and orphan removal after a restart.
 * @throws {ExecError} when `ip` fails.
 */
export async function listNetworkObjects(options: { logger?: Logger } = {}): Promise<NetworkObjects> {
  const logger = options.logger ?? silentLogger;
  const netns = (await netnsNames(logger)).filter((name) => name.startsWith(KERNEL_OBJECT_PREFIX)).sort();
  const links = (await hostLinks(logger)).flatMap((link) => (link.ifname?.startsWith(KERNEL_OBJECT_PREFIX) ? [link.ifname] : [])).sort();
  return { netns, links };
}

/**
 * The IPv4 addresses configured on the host namespace's links (all scopes, including 127.0.0.1).
 * @throws {ExecError} when `ip` fails.
 */
export async function hostIPv4Addresses(options: { logger?: Logger } = {}): Promise<string[]> {
  return (await hostLinks(options.logger ?? silentLogger)).flatMap((link) =>
    (link.addr_info ?? []).flatMap((info) => (info.family === 'inet' && info.local ? [info.local] : [])),
  );
}

/** The DNS configuration an environment gets; see {@link environmentDnsFrom}. */
export interface EnvironmentDns {
  /** Contents for the file bind-mounted read-only at /etc/resolv.conf in the environment. */
  resolvConf: string;
  /** IPv4 nameservers written to `resolvConf` (at most 3, resolv.conf(5) MAXNS). */
  nameservers: string[];
  /** The subset of `nameservers` that are host addresses; pass to `applyFirewall({hostDnsAddresses})`. */
  hostDnsAddresses: string[];
  /** `host`: the host's resolv.conf; `systemd-resolved`: its upstream list; `none`: nothing usable. */
  source: 'host' | 'systemd-resolved' | 'none';
  /** Set when the environment gets no nameserver, with the reason. */
  warning?: string;
}

/** Default paths read by {@link environmentDns}. */
export const HOST_RESOLV_CONF = '/etc/resolv.conf';
/** systemd-resolved's list of upstream servers (systemd-resolved.service(8), "/etc/resolv.conf"). */
export const SYSTEMD_RESOLVED_UPSTREAM = '/run/systemd/resolve/resolv.conf';

interface ParsedResolvConf {
  nameservers: string[];
  search?: string;
  options?: string;
}

function parseResolvConf(text: string): ParsedResolvConf {
  const parsed: ParsedResolvConf = { nameservers: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [keyword, ...rest] = line.split(/\s+/);
    const value = rest.join(' ');
    if (!keyword || !value) continue;
    // resolv.conf(5): the last "search"/"domain" wins; "options" lines accumulate.
    if (keyword === 'nameserver' && rest[0]) parsed.nameservers.push(rest[0]);
    else if (keyword === 'search' || keyword === 'domain') parsed.search = value;
    else if (keyword === 'options') parsed.options = parsed.options ? `${parsed.options} ${value}` : value;
  }
  return parsed;
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

/**
 * Computes an environment's resolv.conf from the host's (pure; see {@link environmentDns} for the I/O).
 *
 * Environments have IPv4 only and their own loopback, so a nameserver is usable when it is IPv4 and not
 * in 127.0.0.0/8. Usable host nameservers are copied with `search`/`domain` and `options`. When the host
 * only lists a loopback stub (systemd-resolved's 127.0.0.53, a local dnsmasq on 127.0.0.1 ...), the
 * upstream list of systemd-resolved is used if given. Otherwise the environment gets no nameserver and a
 * `warning`: a loopback-only resolver cannot be reached from another namespace (known limitation; the fix
 * is to make that resolver also listen on a host address, which is then allowed through the firewall).
 */
export function environmentDnsFrom(input: {
  hostResolvConf: string;
  upstreamResolvConf?: string;
  hostAddresses: readonly string[];
}): EnvironmentDns {
  const usable = (parsed: ParsedResolvConf): string[] =>
    parsed.nameservers.filter((address) => isIPv4(address) && !isLoopback(address)).slice(0, 3);
  const host = parseResolvConf(input.hostResolvConf);
  let chosen = host;
  let source: 'host' | 'systemd-resolved' = 'host';
  let nameservers = usable(host);
  if (nameservers.length === 0 && input.upstreamResolvConf !== undefined) {
    const upstream = parseResolvConf(input.upstreamResolvConf);
    if (usable(upstream).length > 0) {
      chosen = { ...upstream, search: upstream.search ?? host.search };
      nameservers = usable(upstream);
      source = 'systemd-resolved';
    }
  }
  const lines = [`# Generated by Warren from the host's resolver configuration (${source}).`];
  if (chosen.search) lines.push(`search ${chosen.search}`);
  if (chosen.options) lines.push(`options ${chosen.options}`);
  for (const address of nameservers) lines.push(`nameserver ${address}`);
  const result: EnvironmentDns = {
    resolvConf: `${lines.join('\n')}\n`,
    nameservers,
    hostDnsAddresses: nameservers.filter((address) => input.hostAddresses.includes(address)),
    source: nameservers.length > 0 ? source : 'none',
  };
  if (nameservers.length === 0) {
    result.warning =
      host.nameservers.length > 0
        ? `host nameservers (${host.nameservers.join(', ')}) are loopback or IPv6 only and no upstream list was found; environments get no DNS`
        : 'the host resolv.conf lists no nameserver; environments get no DNS';
  }
  return result;
}

/**
 * Reads the host's resolver configuration and computes the environment resolv.conf
 * ({@link environmentDnsFrom}); logs a warning when environments would get no nameserver.
 * @throws {Error} (errno) when `resolvConfPath` cannot be read; {@link ExecError} when `ip` fails.
 */
export async function environmentDns(
  options: { resolvConfPath?: string; upstreamResolvConfPath?: string; logger?: Logger } = {},
): Promise<EnvironmentDns> {
  const logger = options.logger ?? silentLogger;
  const hostResolvConf = await readFile(options.resolvConfPath ?? HOST_RESOLV_CONF, 'utf8');
  let upstreamResolvConf: string | undefined;
  try {
    upstreamResolvConf = await readFile(options.upstreamResolvConfPath ?? SYSTEMD_RESOLVED_UPSTREAM, 'utf8');
  } catch {
    upstreamResolvConf = undefined; // no systemd-resolved on this host
  }
  const dns = environmentDnsFrom({
    hostResolvConf,
    ...(upstreamResolvConf === undefined ? {} : { upstreamResolvConf }),
    hostAddresses: await hostIPv4Addresses({ logger }),
  });
  if (dns.warning) logger.warn({ warning: dns.warning }, 'environments get no DNS');
  return dns;
}
