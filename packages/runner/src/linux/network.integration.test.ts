// Real netns/veth/nftables: two environment slots behind the Warren firewall, proven with real TCP
// connections between namespaces this test creates and host listeners. Needs root, iproute2, nftables, socat.
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exec, spawnLogged } from './exec.js';
import { environmentDns, hostIPv4Addresses, inspectNetwork, listNetworkObjects, setupNetwork, teardownNetwork } from './network.js';
import { applyFirewall, firewallRuleset, listWarrenTables, removeFirewall } from './nft.js';
import { slotInfo } from './slots.js';

// High slots, varied by pid, so parallel runs on one host rarely meet.
const SLOT_1 = 15000 + (process.pid % 500) * 2;
const SLOT_2 = SLOT_1 + 1;
const env1 = slotInfo(SLOT_1);
const env2 = slotInfo(SLOT_2);
// The fake upstream stands for "the internet". Its host-side link must NOT match the firewall's
// "warren*" wildcard (it would be treated as an environment), so it is named wtu<pid>h; the namespace
// carries the warren prefix. Both are removed in afterAll and checked.
const UPSTREAM_NS = `warren-t${process.pid}-up`;
const UPSTREAM_HOST_LINK = `wtu${process.pid % 100000}h`;
const UPSTREAM_INNER_LINK = `wtu${process.pid % 100000}c`;
const UPSTREAM_HOST_ADDRESS = '198.51.100.1'; // TEST-NET-2 (RFC 5737)
const UPSTREAM_ADDRESS = '198.51.100.2';
const PORT_BASE = 20000 + (process.pid % 4000) * 2;
const ENV_PORT = PORT_BASE;
const HOST_PORT = PORT_BASE + 1;
const UPSTREAM_PORT = 9100;

const listeners: ChildProcess[] = [];

/** Starts `socat` in `netns` (or on the host) answering every connection with the output of `shellCommand`. */
function listen(netns: string | undefined, address: string, port: number, shellCommand: string): void {
  const socat = ['socat', `TCP-LISTEN:${port},bind=${address},fork,reuseaddr`, `SYSTEM:${shellCommand}`];
  const argv = netns ? ['ip', 'netns', 'exec', netns, ...socat] : socat;
  // Own process group so afterAll can kill the listener and its forked children by the group id.
  listeners.push(spawnLogged(argv, { detached: true, stdio: 'ignore' }));
}

/** Connects from `netns` (or the host) and returns what the server sent, or `undefined` if it could not connect. */
async function connect(netns: string | undefined, address: string, port: number): Promise<string | undefined> {
  const socat = ['socat', '-T', '4', '-t', '4', '-', `TCP:${address}:${port},connect-timeout=2`];
  const argv = netns ? ['ip', 'netns', 'exec', netns, ...socat] : socat;
  const result = await exec(argv, { input: '', okCodes: [0, 1] });
  return result.code === 0 ? result.stdout.trim() : undefined;
}

/** Waits until a listener answers from an allowed vantage point, so a later failure means "blocked". */
async function waitReachable(netns: string | undefined, address: string, port: number): Promise<string> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const reply = await connect(netns, address, port);
    if (reply !== undefined) return reply;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`listener ${address}:${port} never became reachable`);
}

let hostExternalAddress: string;

describe('environment network and firewall (root, real ip/nft)', () => {
  beforeAll(async () => {
    for (const tool of ['ip', 'nft', 'socat']) {
      await exec(['sh', '-c', `command -v ${tool}`]).catch((error: unknown) => {
        throw new Error(`${tool} is required for this test (apt-get install iproute2 nftables socat)`, { cause: error });
      });
    }
    // Fake upstream: a namespace reachable from the host through its own veth, without a route back to
    // 10.88.0.0/16, so environment traffic reaches it only when it is masqueraded.
    await exec(['ip', 'netns', 'add', UPSTREAM_NS]);
    await exec(['ip', '-batch', '-'], {
      input: [
        `link add ${UPSTREAM_HOST_LINK} type veth peer name ${UPSTREAM_INNER_LINK} netns ${UPSTREAM_NS}`,
        `address add ${UPSTREAM_HOST_ADDRESS}/30 dev ${UPSTREAM_HOST_LINK}`,
        `link set ${UPSTREAM_HOST_LINK} up`,
        '',
      ].join('\n'),
    });
    await exec(['ip', '-n', UPSTREAM_NS, '-batch', '-'], {
      input: [
        `address add ${UPSTREAM_ADDRESS}/30 dev ${UPSTREAM_INNER_LINK}`,
        `link set ${UPSTREAM_INNER_LINK} up`,
        'link set lo up',
        '',
      ].join('\n'),
    });
    const external = (await hostIPv4Addresses()).find(
      (address) => !address.startsWith('127.') && !address.startsWith('10.88.') && !address.startsWith('198.51.100.'),
    );
    if (!external) throw new Error('the host has no non-loopback IPv4 address (eth0) to test against');
    hostExternalAddress = external;
  });

  afterAll(async () => {
    for (const listener of listeners) {
      if (listener.pid !== undefined && listener.exitCode === null) {
        try {
          process.kill(-listener.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    const errors: unknown[] = [];
    const attempt = async (work: () => Promise<unknown>): Promise<void> => {
      await work().catch((error: unknown) => errors.push(error));
    };
    await attempt(() => teardownNetwork(SLOT_1));
    await attempt(() => teardownNetwork(SLOT_2));
    await attempt(() => exec(['ip', 'link', 'delete', UPSTREAM_HOST_LINK], { okCodes: [0, 1] }));
    await attempt(() => exec(['ip', 'netns', 'delete', UPSTREAM_NS], { okCodes: [0, 1] }));
    await attempt(() => removeFirewall());
    const left = await listNetworkObjects();
    const ours = [env1.netnsName, env2.netnsName, UPSTREAM_NS, env1.hostInterface, env2.hostInterface];
    expect([...left.netns, ...left.links].filter((name) => ours.includes(name))).toEqual([]);
    expect((await exec(['ip', '-j', 'link', 'show'])).stdout).not.toContain(`"${UPSTREAM_HOST_LINK}"`);
    expect(await listWarrenTables()).not.toContainEqual({ family: 'inet', name: 'warren' });
    expect(errors).toEqual([]);
  });

  it('sets up two environments idempotently and repairs a half-made one', async () => {
    expect((await setupNetwork(SLOT_1)).changed).toBe(true);
    expect((await setupNetwork(SLOT_2)).changed).toBe(true);
    expect(await setupNetwork(SLOT_1)).toMatchObject({ changed: false, netnsPath: env1.netnsPath });
    expect(await inspectNetwork(SLOT_1)).toEqual({ netns: true, hostLink: true, pairedLink: true, complete: true });

    // Half-made: the veth pair is gone but the namespace remains.
    await exec(['ip', 'link', 'delete', env2.hostInterface]);
    expect(await inspectNetwork(SLOT_2)).toMatchObject({ netns: true, hostLink: false, complete: false });
    expect((await setupNetwork(SLOT_2)).changed).toBe(true);
    expect((await inspectNetwork(SLOT_2)).complete).toBe(true);

    // Half-made: a route is missing.
    await exec(['ip', '-n', env2.netnsName, 'route', 'delete', 'default']);
    expect((await inspectNetwork(SLOT_2)).complete).toBe(false);
    expect((await setupNetwork(SLOT_2)).changed).toBe(true);
    expect((await inspectNetwork(SLOT_2)).complete).toBe(true);

    const objects = await listNetworkObjects();
    expect(objects.netns).toEqual(expect.arrayContaining([env1.netnsName, env2.netnsName]));
    expect(objects.links).toEqual(expect.arrayContaining([env1.hostInterface, env2.hostInterface]));
    expect((await exec(['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim()).toBe('1');
  });

  it('without the firewall, environments reach each other and the host (control)', async () => {
    await removeFirewall();
    listen(env2.netnsName, env2.environmentAddress, ENV_PORT, 'echo env2');
    listen(undefined, '0.0.0.0', HOST_PORT, 'echo host');
    listen(UPSTREAM_NS, UPSTREAM_ADDRESS, UPSTREAM_PORT, 'echo $SOCAT_PEERADDR');
    expect(await waitReachable(undefined, env2.environmentAddress, ENV_PORT)).toBe('env2');
    expect(await waitReachable(undefined, '127.0.0.1', HOST_PORT)).toBe('host');
    expect(await waitReachable(undefined, UPSTREAM_ADDRESS, UPSTREAM_PORT)).toBe(UPSTREAM_HOST_ADDRESS);

    expect(await connect(env1.netnsName, env2.environmentAddress, ENV_PORT)).toBe('env2');
    expect(await connect(env1.netnsName, env1.hostAddress, HOST_PORT)).toBe('host');
    // No NAT yet: the upstream has no route back to 10.88.0.0/16.
    expect(await connect(env1.netnsName, UPSTREAM_ADDRESS, UPSTREAM_PORT)).toBeUndefined();
  });

  it('with the firewall, isolates environments from each other and from host services, and NATs egress', async () => {
    await applyFirewall();
    await applyFirewall(); // idempotent whole-table replace
    const listed = (await exec(['nft', 'list', 'table', 'inet', 'warren'])).stdout;
    expect(listed.match(/chain input/g)).toHaveLength(1);

    expect(await connect(env1.netnsName, env2.environmentAddress, ENV_PORT)).toBeUndefined();
    expect(await connect(env1.netnsName, env1.hostAddress, HOST_PORT)).toBeUndefined();
    expect(await connect(env1.netnsName, env2.hostAddress, HOST_PORT)).toBeUndefined();
    expect(await connect(env1.netnsName, hostExternalAddress, HOST_PORT)).toBeUndefined();

    // The host can still connect into an environment.
    expect(await connect(undefined, env2.environmentAddress, ENV_PORT)).toBe('env2');
    // Egress is forwarded and masqueraded to the host's address on the outgoing link.
    expect(await connect(env1.netnsName, UPSTREAM_ADDRESS, UPSTREAM_PORT)).toBe(UPSTREAM_HOST_ADDRESS);
    expect(await connect(env2.netnsName, UPSTREAM_ADDRESS, UPSTREAM_PORT)).toBe(UPSTREAM_HOST_ADDRESS);

    const counters = (await exec(['nft', 'list', 'chain', 'inet', 'warren', 'input'])).stdout;
    expect(counters).toMatch(/counter packets [1-9]\d* bytes \d+ drop/);
  });

  it('lets DNS through to a resolver on a host address only', async () => {
    await applyFirewall({ hostDnsAddresses: [hostExternalAddress] });
    listen(undefined, hostExternalAddress, 53, 'echo dns');
    expect(await waitReachable(undefined, hostExternalAddress, 53)).toBe('dns');
    expect(await connect(env1.netnsName, hostExternalAddress, 53)).toBe('dns');
    expect(await connect(env1.netnsName, hostExternalAddress, HOST_PORT)).toBeUndefined();
    expect(firewallRuleset({ hostDnsAddresses: [hostExternalAddress] })).toContain('dport 53');
  });

  it("derives the environment resolv.conf from this host's resolver configuration", async () => {
    const dns = await environmentDns();
    const hostAddresses = await hostIPv4Addresses();
    for (const address of dns.nameservers) expect(address.startsWith('127.')).toBe(false);
    expect(dns.hostDnsAddresses.every((address) => hostAddresses.includes(address))).toBe(true);
    if (dns.source === 'none') expect(dns.warning).toBeDefined();
    else expect(dns.resolvConf).toContain(`nameserver ${dns.nameservers[0]}`);
  });

  it('tears down idempotently', async () => {
    expect(await teardownNetwork(SLOT_1)).toBe(true);
    expect(await teardownNetwork(SLOT_1)).toBe(false);
    expect(await inspectNetwork(SLOT_1)).toEqual({ netns: false, hostLink: false, pairedLink: false, complete: false });
    await removeFirewall();
    await removeFirewall();
    expect(await listWarrenTables()).not.toContainEqual({ family: 'inet', name: 'warren' });
  });
});
