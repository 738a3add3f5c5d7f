import { describe, expect, it } from 'vitest';
import { age, formatBytes, parseBytes, renderTable } from './output.js';
import { parseListen, parseMillicores, parseProxyFront, sanitizeName } from './commands/index.js';

describe('output helpers', () => {
  it('renders an aligned table', () => {
    const text = renderTable(
      [
        { a: 'x', b: 'long value' },
        { a: 'yyyy', b: 'v' },
      ],
      [
        { header: 'A', value: (row) => row.a },
        { header: 'B', value: (row) => row.b },
      ],
    );
    expect(text).toBe('A      B\nx      long value\nyyyy   v\n');
  });

  it('parses and formats sizes', () => {
    expect(parseBytes('4Gi')).toBe(4 * 1024 ** 3);
    expect(parseBytes('512Mi')).toBe(512 * 1024 ** 2);
    expect(parseBytes('1G')).toBe(1e9);
    expect(parseBytes('12')).toBe(12);
    expect(parseBytes('lots')).toBeUndefined();
    expect(formatBytes(1536)).toBe('1.5 KiB');
  });

  it('parses CPU as millicores or cores', () => {
    expect(parseMillicores('2000m')).toBe(2000);
    expect(parseMillicores('1.5')).toBe(1500);
    expect(() => parseMillicores('fast')).toThrow(/--cpu/);
  });

  it('parses listen addresses and rejects bad ones naming the flag', () => {
    expect(parseListen('127.0.0.1:7080', '--listen')).toEqual({ host: '127.0.0.1', port: 7080 });
    expect(parseListen('[::1]:80', '--listen')).toEqual({ host: '::1', port: 80 });
    expect(() => parseListen('7080', '--listen')).toThrow(/--listen must be HOST:PORT/);
    expect(() => parseListen('h:99999', '--listen')).toThrow(/--listen/);
  });

  it('takes --proxy-front native or node, and names the flag otherwise', () => {
    expect(parseProxyFront('native')).toBe('native');
    expect(parseProxyFront('node')).toBe('node');
    expect(() => parseProxyFront('nginx')).toThrow(/--proxy-front must be "native" or "node", not "nginx"/);
  });

  it('formats ages and names', () => {
    expect(age(new Date(Date.now() - 3 * 3600 * 1000).toISOString())).toBe('3h');
    expect(sanitizeName('My_Host.example')).toBe('my-host-example');
  });
});
