// Every kind of bad input gets a 4xx Status naming the problem (the field where there is one); none gives a 500.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Environment } from '@warren/api';
import { closeSharedPglite } from '../storage/testing.js';
import { openApiFixture, statusOf, type ApiFixture } from './testing.js';

let fx: ApiFixture;
let environment: Environment;
beforeAll(async () => {
  fx = await openApiFixture();
  environment = await fx.createEnvironment('userA', 'target');
});
afterAll(async () => {
  await fx.close();
  await closeSharedPglite();
});

const good = { spec: { source: { git: { url: 'https://example.com/o/r.git' } } } };

interface Case {
  name: string;
  method: string;
  url: string | (() => string);
  body?: unknown;
  headers?: Record<string, string>;
  code: number;
  reason: string;
  field?: string;
  /** Defaults to user A. */
  who?: 'admin' | 'userA';
}

const cases: Case[] = [
  { name: 'malformed JSON', method: 'POST', url: '/api/v1/environments', body: '{"spec": {', code: 400, reason: 'BadRequest' },
  { name: 'malformed merge patch', method: 'PATCH', url: '/api/v1/environments/target', body: '{nope', code: 400, reason: 'BadRequest' },
  { name: 'JSON that is not an object', method: 'POST', url: '/api/v1/environments', body: '[1,2]', code: 400, reason: 'BadRequest' },
  {
    name: 'empty JSON body',
    method: 'POST',
    url: '/api/v1/environments',
    body: '',
    headers: { 'content-type': 'application/json' },
    code: 400,
    reason: 'BadRequest',
  },
  {
    name: 'unknown top-level field',
    method: 'POST',
    url: '/api/v1/environments',
    body: { ...good, bogus: 1 },
    code: 422,
    reason: 'Invalid',
    field: 'bogus',
  },
  {
    name: 'unknown nested field',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: { source: { git: { url: 'https://e.com/o/r', depth: 1 } } } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.source.git.depth',
  },
  {
    name: 'wrong type',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: { source: { git: { url: 42 } } } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.source.git.url',
  },
  {
    name: 'wrong type in array',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: { ...good.spec, ports: [{ port: 'http' }] } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.ports[0].port',
  },
  {
    name: 'missing required field',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: {} },
    code: 422,
    reason: 'Invalid',
    field: 'spec.source',
  },
  {
    name: 'invalid name',
    method: 'POST',
    url: '/api/v1/environments',
    body: { ...good, metadata: { name: 'Not A DNS Label' } },
    code: 422,
    reason: 'Invalid',
    field: 'metadata.name',
  },
  {
    name: 'invalid git URL (ext::)',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: { source: { git: { url: 'ext::sh -c touch% /tmp/pwned' } } } },
    code: 422,
    reason: 'InvalidGitUrl',
    field: 'spec.source.git.url',
  },
  {
    name: 'invalid git URL (option)',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: { source: { git: { url: '--upload-pack=evil' } } } },
    code: 422,
    reason: 'InvalidGitUrl',
    field: 'spec.source.git.url',
  },
  {
    name: 'invalid git URL in a patch',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { spec: { source: { git: { url: 'ftp://h/r' } } } },
    code: 422,
    reason: 'InvalidGitUrl',
    field: 'spec.source.git.url',
  },
  {
    name: 'unknown class',
    method: 'POST',
    url: '/api/v1/environments',
    body: { spec: { ...good.spec, className: 'huge' } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.className',
  },
  {
    name: 'duplicate name',
    method: 'POST',
    url: '/api/v1/environments',
    body: { ...good, metadata: { name: 'target' } },
    code: 409,
    reason: 'AlreadyExists',
    field: 'metadata.name',
  },
  {
    name: 'unknown field in a patch',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { spec: { colour: 'red' } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.colour',
  },
  {
    name: 'wrong type in a patch',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { spec: { timeouts: { inactivitySeconds: 'soon' } } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.timeouts.inactivitySeconds',
  },
  {
    name: 'removing a required field by patch',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { spec: { source: null } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.source',
  },
  {
    name: 'bad label by patch',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { metadata: { labels: { 'bad key!': 'x' } } },
    code: 422,
    reason: 'Invalid',
    field: 'metadata.labels.bad key!',
  },
  {
    name: 'desiredPhase Deleted by patch',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { spec: { desiredPhase: 'Deleted' } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.desiredPhase',
  },
  {
    name: 'malformed resourceVersion',
    method: 'PATCH',
    url: '/api/v1/environments/target',
    body: { metadata: { resourceVersion: 'abc' } },
    code: 422,
    reason: 'Invalid',
    field: 'metadata.resourceVersion',
  },
  {
    name: 'unknown field in status',
    method: 'PUT',
    url: () => `/api/v1/environments/${environment.metadata.id}/status`,
    body: { status: { phase: 'Running' }, extra: true },
    code: 422,
    reason: 'Invalid',
    field: 'extra',
  },
  {
    name: 'bad phase in status',
    method: 'PUT',
    url: () => `/api/v1/runners/r1/status`,
    body: { status: { phase: 'Sleeping' } },
    who: 'admin',
    code: 422,
    reason: 'Invalid',
    field: 'status.phase',
  },
  {
    name: 'class too small',
    method: 'POST',
    url: '/api/v1/environmentclasses',
    body: { metadata: { name: 'tiny' }, spec: { cpuMillicores: 1, memoryBytes: 1 } },
    who: 'admin',
    code: 422,
    reason: 'Invalid',
    field: 'spec.cpuMillicores',
  },
  {
    name: 'runner token without runner',
    method: 'POST',
    url: '/api/v1/tokens',
    body: { spec: { type: 'Runner' } },
    who: 'admin',
    code: 422,
    reason: 'Invalid',
    field: 'spec.runnerName',
  },
  {
    name: 'token expiring in the past',
    method: 'POST',
    url: '/api/v1/tokens',
    body: { spec: { expiresTime: '2001-01-01T00:00:00Z' } },
    code: 422,
    reason: 'Invalid',
    field: 'spec.expiresTime',
  },
  {
    name: 'text/plain body',
    method: 'POST',
    url: '/api/v1/environments',
    body: JSON.stringify(good),
    headers: { 'content-type': 'text/plain' },
    code: 415,
    reason: 'UnsupportedMediaType',
  },
  {
    name: 'merge patch content type on POST',
    method: 'POST',
    url: '/api/v1/environments',
    body: JSON.stringify(good),
    headers: { 'content-type': 'application/merge-patch+json' },
    code: 415,
    reason: 'UnsupportedMediaType',
  },
  {
    name: 'oversized body',
    method: 'POST',
    url: '/api/v1/environments',
    body: { ...good, metadata: { labels: { big: 'x'.repeat(1024 * 1024) } } },
    code: 413,
    reason: 'RequestEntityTooLarge',
  },
  { name: 'unknown id', method: 'GET', url: '/api/v1/environments/env-doesnotexist', code: 404, reason: 'NotFound' },
  {
    name: 'unknown id on patch',
    method: 'PATCH',
    url: '/api/v1/runners/nope',
    body: { spec: { unschedulable: true } },
    code: 404,
    reason: 'NotFound',
  },
  { name: 'unknown id on delete', method: 'DELETE', url: '/api/v1/users/nope', code: 404, reason: 'NotFound' },
  {
    name: 'unknown id on status',
    method: 'PUT',
    url: '/api/v1/environments/nope/status',
    body: { status: { phase: 'Running' } },
    code: 404,
    reason: 'NotFound',
  },
  { name: 'unknown route', method: 'GET', url: '/api/v1/widgets', code: 404, reason: 'NotFound' },
  { name: 'unknown route outside the API', method: 'GET', url: '/index.php', code: 404, reason: 'NotFound' },
  { name: 'wrong method', method: 'PUT', url: '/api/v1/environments', body: good, code: 405, reason: 'MethodNotAllowed' },
  {
    name: 'status on a kind without one',
    method: 'PUT',
    url: '/api/v1/users/alice/status',
    body: { status: {} },
    code: 404,
    reason: 'NotFound',
  },
  { name: 'bad watch flag', method: 'GET', url: '/api/v1/environments?watch=maybe', code: 422, reason: 'Invalid', field: 'watch' },
  {
    name: 'bad resourceVersion query',
    method: 'GET',
    url: '/api/v1/environments?watch=true&resourceVersion=x1',
    code: 422,
    reason: 'Invalid',
    field: 'resourceVersion',
  },
  {
    name: 'bad label selector',
    method: 'GET',
    url: '/api/v1/environments?labelSelector=a!b',
    code: 422,
    reason: 'Invalid',
    field: 'labelSelector',
  },
  {
    name: 'prototype poisoning',
    method: 'POST',
    url: '/api/v1/environments',
    body: '{"__proto__": {"admin": true}, "spec": {}}',
    code: 400,
    reason: 'BadRequest',
  },
];

describe('bad input', () => {
  for (const testCase of cases) {
    it(`${testCase.name} → ${testCase.code} ${testCase.reason}`, async () => {
      const url = typeof testCase.url === 'function' ? testCase.url() : testCase.url;
      const response = await fx.call(testCase.who ?? 'userA', testCase.method, url, testCase.body, testCase.headers);
      const status = statusOf(response);
      expect({ code: response.statusCode, reason: status.reason }).toEqual({ code: testCase.code, reason: testCase.reason });
      expect(status.code).toBe(testCase.code);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      if (testCase.field) expect(status.details?.causes?.map((cause) => cause.field)).toContain(testCase.field);
      expect(response.body).not.toMatch(/at .*\.(ts|js):\d+/); // no stack traces
    });
  }

  it('answers 405 with an Allow header', async () => {
    const response = await fx.call('userA', 'DELETE', '/api/v1/environments');
    expect(response.statusCode).toBe(405);
    expect(response.headers.allow).toContain('GET');
    expect(response.headers.allow).toContain('POST');
  });

  it('keeps serving after all of the above', async () => {
    const response = await fx.call('anonymous', 'GET', '/healthz');
    expect(response.json()).toEqual({ status: 'ok' });
  });
});

describe('unexpected errors', () => {
  it('are a 500 InternalError naming the request id, without detail', async () => {
    const original = fx.store.list.bind(fx.store);
    fx.store.list = () => Promise.reject(new Error('secret database detail'));
    try {
      const response = await fx.call('userA', 'GET', '/api/v1/environments');
      expect(response.statusCode).toBe(500);
      const status = statusOf(response);
      expect(status.reason).toBe('InternalError');
      expect(status.message).toContain(String(response.headers['x-request-id']));
      expect(response.body).not.toContain('secret database detail');
    } finally {
      fx.store.list = original;
    }
  });
});
