// The runner's nftables firewall: one `table inet warren` giving environments NAT'd egress while
// keeping them away from each other and from the host's own services.
import { isIPv4 } from 'node:net';
import { InvalidError, type Logger } from '@warren/base';
import { exec } from './exec.js';
import { ENVIRONMENT_NETWORK_CIDR, KERNEL_OBJECT_PREFIX } from './slots.js';

/** Name of the one table (family `inet`) the runner owns. */
export const FIREWALL_TABLE = 'warren';

/** Options for {@link firewallRuleset} and {@link applyFirewall}. */
export interface FirewallOptions {
  /**
   * IPv4 addresses of DNS resolvers that listen on a host address (e.g. dnsmasq on the host) and that
   * environments may query on port 53 (UDP and TCP). Leave empty when the nameservers are off-host:
   * their traffic is forwarded and NAT'd like any other egress. See `environmentDns()` in network.ts.
   */
  hostDnsAddresses?: readonly string[];
  /** The environments' supernet; default `10.88.0.0/16`. Masqueraded when it leaves through a non-warren link. */
  environmentCidr?: string;
  logger?: Logger;
}

/**
 * Renders the whole-table replacement script fed to `nft -f -`.
 *
 * The first two lines create then delete the table so the script also works when it does not exist; the
 * file is one transaction, so rules are never missing in between (nft(8) "ATOMIC RULE REPLACEMENT").
 * The rules match every link named `warren*` (the host side of each environment's veth), so nothing is
 * per environment:
 * - `input`: from an environment only replies (ct state established,related) and DNS to host resolvers are
 *   accepted; everything else addressed to any host address is dropped, which also hides the runner's
 *   control ports. Connections the host opens into an environment leave via `output` and their replies
 *   come back as established, so they work.
 * - `forward`: environment → environment is dropped; IPv6 from environments is dropped (they only get IPv4).
 * - `postrouting` (nat): IPv4 from the environment network leaving through a non-warren link is masqueraded.
 * Note: a `drop` policy in another table's forward hook (iptables FORWARD DROP from Docker, say) still
 * applies; an `accept` in one table does not override a drop elsewhere (nft(8) "CHAINS").
 * @throws {InvalidError} when a DNS address is not IPv4 or the CIDR is malformed.
 */
export function firewallRuleset(options: FirewallOptions = {}): string {
  const dns = [...new Set(options.hostDnsAddresses ?? [])];
  for (const address of dns) {
    if (!isIPv4(address)) {
      throw new InvalidError(`host DNS address ${address} is not IPv4`, [{ field: 'hostDnsAddresses', message: 'must be IPv4' }]);
    }
  }
  const cidr = options.environmentCidr ?? ENVIRONMENT_NETWORK_CIDR;
  const [network, prefix] = cidr.split('/');
  if (!network || !isIPv4(network) || !/^([0-9]|[12][0-9]|3[0-2])$/.test(prefix ?? '')) {
    throw new InvalidError(`environment CIDR ${cidr} is not an IPv4 CIDR`, [{ field: 'environmentCidr', message: 'invalid' }]);
  }
  const links = `"${KERNEL_OBJECT_PREFIX}*"`;
  const dnsSet = dns.length > 0 ? `{ ${dns.join(', ')} }` : undefined;
  const lines = [
    `table inet ${FIREWALL_TABLE}`,
    `delete table inet ${FIREWALL_TABLE}`,
    `table inet ${FIREWALL_TABLE} {`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname ${links} ct state established,related accept`,
    ...(dnsSet
      ? [
          `    iifname ${links} ip daddr ${dnsSet} udp dport 53 accept comment "dns to host resolver"`,
          `    iifname ${links} ip daddr ${dnsSet} tcp dport 53 accept comment "dns to host resolver"`,
        ]
      : []),
    `    iifname ${links} counter drop comment "environment to host"`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname ${links} oifname ${links} counter drop comment "environment to environment"`,
    `    iifname ${links} meta nfproto ipv6 counter drop comment "environments are IPv4 only"`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    ip saddr ${cidr} oifname != ${links} masquerade comment "environment egress"`,
    `  }`,
    `}`,
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * Installs or replaces `table inet warren` in one transaction (idempotent: same options, same table).
 * Needs root (CAP_NET_ADMIN). Does not touch any other table.
 * @throws {InvalidError} see {@link firewallRuleset}.
 * @throws {ExecError} when `nft` fails (missing binary, kernel without nf_tables/NAT).
 */
export async function applyFirewall(options: FirewallOptions = {}): Promise<void> {
  const script = firewallRuleset(options);
  await exec(['nft', '-f', '-'], { input: script, logger: options.logger });
  options.logger?.info({ table: FIREWALL_TABLE, hostDnsAddresses: options.hostDnsAddresses ?? [] }, 'firewall applied');
}

/**
 * Deletes `table inet warren` if it exists (idempotent; create-then-delete in one transaction).
 * @throws {ExecError} when `nft` fails.
 */
export async function removeFirewall(options: { logger?: Logger } = {}): Promise<void> {
  await exec(['nft', '-f', '-'], {
    input: `table inet ${FIREWALL_TABLE}\ndelete table inet ${FIREWALL_TABLE}\n`,
    logger: options.logger,
  });
}

/** One nftables table as `family` + `name`. */
export interface NftTable {
  family: string;
  name: string;
}

/**
 * Lists nftables tables whose name starts with `warren` (leak checks, orphan removal).
 * Parses `nft -j list tables` (libnftables-json(5)).
 * @throws {ExecError} when `nft` fails.
 */
export async function listWarrenTables(options: { logger?: Logger } = {}): Promise<NftTable[]> {
  const { stdout } = await exec(['nft', '-j', 'list', 'tables'], { logger: options.logger });
  if (stdout.trim() === '') return [];
  const parsed = JSON.parse(stdout) as { nftables?: Array<{ table?: { family?: string; name?: string } }> };
  const tables: NftTable[] = [];
  for (const item of parsed.nftables ?? []) {
    const table = item.table;
    if (table?.name?.startsWith(KERNEL_OBJECT_PREFIX) && table.family) {
      tables.push({ family: table.family, name: table.name });
    }
  }
  return tables;
}
