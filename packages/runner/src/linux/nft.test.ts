import { InvalidError } from '@warren/base';
import { describe, expect, it } from 'vitest';
import { firewallRuleset } from './nft.js';

describe('firewallRuleset', () => {
  it('replaces the whole table atomically and covers every warren link by wildcard', () => {
    const script = firewallRuleset();
    const lines = script.split('\n');
    expect(lines.slice(0, 3)).toEqual(['table inet warren', 'delete table inet warren', 'table inet warren {']);
    expect(script).toContain('iifname "warren*" ct state established,related accept');
    expect(script).toContain('iifname "warren*" counter drop');
    expect(script).toContain('iifname "warren*" oifname "warren*" counter drop');
    expect(script).toContain('ip saddr 10.88.0.0/16 oifname != "warren*" masquerade');
    expect(script).not.toContain('dport 53');
  });

  it('accepts DNS only to the given host resolvers, before the drop', () => {
    const script = firewallRuleset({ hostDnsAddresses: ['192.0.2.2', '192.0.2.2'] });
    const udp = script.indexOf('ip daddr { 192.0.2.2 } udp dport 53 accept');
    const tcp = script.indexOf('ip daddr { 192.0.2.2 } tcp dport 53 accept');
    const drop = script.indexOf('iifname "warren*" counter drop');
    expect(udp).toBeGreaterThan(0);
    expect(tcp).toBeGreaterThan(0);
    expect(drop).toBeGreaterThan(Math.max(udp, tcp));
  });

  it('rejects a non-IPv4 resolver or a malformed CIDR instead of rendering it', () => {
    expect(() => firewallRuleset({ hostDnsAddresses: ['::1'] })).toThrow(InvalidError);
    expect(() => firewallRuleset({ hostDnsAddresses: ['1.2.3.4; flush ruleset'] })).toThrow(InvalidError);
    expect(() => firewallRuleset({ environmentCidr: '10.88.0.0/40' })).toThrow(InvalidError);
  });
});
