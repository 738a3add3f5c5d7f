// Routing of proxied requests (host and path form) and the port token's query parameter, which must be found and
// removed by the same rules (URLSearchParams'), so that a token never reaches the app.
import { describe, expect, it } from 'vitest';
import { parseProxyRoute, queryParameter, withoutQueryParameter } from './route.js';

describe('proxy routes', () => {
  it('reads the host form (port suffix and case ignored) before the path form', () => {
    expect(parseProxyRoute('3000-Hello.LOCALHOST:7082', '/a?b', 'localhost')).toMatchObject({
      environment: 'hello',
      port: 3000,
      form: 'host',
      path: '/a?b',
      cookiePath: '/',
    });
    expect(parseProxyRoute('127.0.0.1:7082', '/p/hello/3000/x?y=1', 'localhost')).toMatchObject({
      environment: 'hello',
      port: 3000,
      form: 'path',
      path: '/x?y=1',
      prefix: '/p/hello/3000',
      cookiePath: '/p/hello/',
    });
    expect(parseProxyRoute('127.0.0.1', '/p/hello/3000', 'localhost')).toMatchObject({ path: '/' });
    expect(parseProxyRoute('3000-bad_name.localhost', '/', 'localhost')).toBeUndefined();
    expect(parseProxyRoute(undefined, '/nothing', 'localhost')).toBeUndefined();
  });

  it('removes exactly the parameters queryParameter finds, also after a second leading "?"', () => {
    const cases = [
      ['/a?warren-token=T', '/a'],
      ['/a?x=1&warren-token=T&y=2', '/a?x=1&y=2'],
      ['/a?warren%2Dtoken=T', '/a'],
      ['/a??warren-token=T&x=1', '/a?x=1'],
      ['/a?x=1&?warren-token=T', '/a?x=1&?warren-token=T'],
      ['/a?warren-tokens=1', '/a?warren-tokens=1'],
    ] as const;
    for (const [target, stripped] of cases) {
      expect(withoutQueryParameter(target, 'warren-token'), target).toBe(stripped);
      expect(queryParameter(stripped, 'warren-token'), stripped).toBeUndefined();
    }
    expect(queryParameter('/a??warren-token=T', 'warren-token')).toBe('T');
  });
});
