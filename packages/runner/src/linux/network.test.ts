import { describe, expect, it } from 'vitest';
import { environmentDnsFrom } from './network.js';

describe('environmentDnsFrom', () => {
  it('copies reachable host nameservers with search and options', () => {
    const dns = environmentDnsFrom({
      hostResolvConf: '# comment\nsearch corp.example\noptions ndots:2\nnameserver 10.255.255.53\nnameserver fd00::1\n',
      hostAddresses: ['127.0.0.1', '192.0.2.2'],
    });
    expect(dns.source).toBe('host');
    expect(dns.nameservers).toEqual(['10.255.255.53']);
    expect(dns.hostDnsAddresses).toEqual([]);
    expect(dns.resolvConf).toContain('search corp.example\n');
    expect(dns.resolvConf).toContain('options ndots:2\n');
    expect(dns.resolvConf).toContain('nameserver 10.255.255.53\n');
    expect(dns.resolvConf).not.toContain('fd00::1');
    expect(dns.warning).toBeUndefined();
  });

  it('marks nameservers on a host address so the firewall can let DNS through', () => {
    const dns = environmentDnsFrom({
      hostResolvConf: 'nameserver 192.0.2.2\nnameserver 198.51.100.9\n',
      hostAddresses: ['192.0.2.2'],
    });
    expect(dns.hostDnsAddresses).toEqual(['192.0.2.2']);
  });

  it('falls back to the systemd-resolved upstream list when the host uses a loopback stub', () => {
    const dns = environmentDnsFrom({
      hostResolvConf: 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n',
      upstreamResolvConf: 'nameserver 192.168.1.1\nnameserver 192.168.1.2\n',
      hostAddresses: [],
    });
    expect(dns.source).toBe('systemd-resolved');
    expect(dns.nameservers).toEqual(['192.168.1.1', '192.168.1.2']);
    expect(dns.resolvConf).toContain('search lan\n');
    expect(dns.resolvConf).not.toContain('127.0.0.53');
  });

  it('reports a loopback-only resolver without an upstream list as no DNS', () => {
    const dns = environmentDnsFrom({ hostResolvConf: 'nameserver 127.0.0.1\n', hostAddresses: [] });
    expect(dns.source).toBe('none');
    expect(dns.nameservers).toEqual([]);
    expect(dns.resolvConf).not.toContain('nameserver');
    expect(dns.warning).toMatch(/loopback/);
  });

  it('keeps at most three nameservers (resolv.conf(5) MAXNS)', () => {
    const dns = environmentDnsFrom({
      hostResolvConf: ['1.1.1.1', '2.2.2.2', '3.3.3.3', '4.4.4.4'].map((a) => `nameserver ${a}`).join('\n'),
      hostAddresses: [],
    });
    expect(dns.nameservers).toEqual(['1.1.1.1', '2.2.2.2', '3.3.3.3']);
  });
});
