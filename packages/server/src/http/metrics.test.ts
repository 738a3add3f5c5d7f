// GET /metrics of the control plane: admin users and the metrics token may scrape, other users, runners and
// anonymous callers may not; the page counts requests by route and code, environments and runners by phase.
import { afterEach, describe, expect, it } from 'vitest';
import { type ApiFixture, openApiFixture } from './testing.js';

describe('server /metrics', () => {
  let fixture: ApiFixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  it('answers admin users only when no metrics token is configured', async () => {
    fixture = await openApiFixture();
    expect((await fixture.call('anonymous', 'GET', '/metrics')).statusCode).toBe(401);
    expect((await fixture.call('userA', 'GET', '/metrics')).statusCode).toBe(403);
    expect((await fixture.call('runner1', 'GET', '/metrics')).statusCode).toBe(403);
    const response = await fixture.call('admin', 'GET', '/metrics');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(response.body).toMatch(/^process_cpu_user_seconds_total \d/m);
  });

  it('answers the metrics token, which grants nothing else', async () => {
    const token = 'metrics-token-0123456789';
    fixture = await openApiFixture({ metrics: { token } });
    const scrape = await fixture.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(scrape.statusCode).toBe(200);
    const wrong = await fixture.app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: 'Bearer metrics-token-0123456780' },
    });
    expect(wrong.statusCode).toBe(401);
    const elsewhere = await fixture.app.inject({
      method: 'GET',
      url: '/api/v1/environments',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(elsewhere.statusCode).toBe(401);
    expect((await fixture.call('admin', 'GET', '/metrics')).statusCode).toBe(200);
  });

  it('counts requests by route and code, and environments and runners by phase', async () => {
    fixture = await openApiFixture();
    await fixture.createEnvironment('userA', 'one');
    await fixture.createEnvironment('userB', 'two');
    await fixture.call('userA', 'GET', '/api/v1/environments');
    await fixture.call('userA', 'GET', '/api/v1/environments/nope');
    await fixture.call('userA', 'GET', '/no/such/route');
    const body = (await fixture.call('admin', 'GET', '/metrics')).body;
    expect(body).toContain('warren_http_requests_total{method="POST",route="/api/v1/environments",code="201"} 2');
    expect(body).toContain('warren_http_requests_total{method="GET",route="/api/v1/environments",code="200"} 1');
    expect(body).toContain('warren_http_requests_total{method="GET",route="/api/v1/environments/:id",code="404"} 1');
    expect(body).toContain('warren_http_requests_total{method="GET",route="unmatched",code="404"} 1');
    expect(body).toMatch(/^warren_http_request_duration_seconds_count\{method="GET",route="\/api\/v1\/environments",code="200"\} 1$/m);
    expect(body).toContain('warren_environments{phase="Pending"} 2');
    expect(body).toContain('warren_runners{phase="Active"} 2');
    expect(body).toContain('warren_watch_streams_open 0');
  });
});
