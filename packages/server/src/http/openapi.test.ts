// The OpenAPI document covers every route the app serves, with schemas from the zod schemas.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSharedPglite } from '../storage/testing.js';
import { openApiFixture, type ApiFixture } from './testing.js';

interface Operation {
  requestBody?: { content: Record<string, { schema: { $ref?: string } }> };
  responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Record<string, unknown>> };
}

let fx: ApiFixture;
let document: Document;
const routes: Array<{ method: string; url: string }> = [];

beforeAll(async () => {
  fx = await openApiFixture();
  const response = await fx.call('anonymous', 'GET', '/api/v1/openapi.json');
  expect(response.statusCode).toBe(200);
  document = response.json<Document>();
  for (const route of fx.app.warrenRoutes()) {
    if (route.method !== 'HEAD') routes.push({ method: route.method.toLowerCase(), url: route.url });
  }
});
afterAll(async () => {
  await fx.close();
  await closeSharedPglite();
});

describe('openapi.json', () => {
  it('is OpenAPI 3.1', () => {
    expect(document.openapi).toBe('3.1.0');
  });

  it('lists every route the app serves, and no other', () => {
    expect(routes.length).toBeGreaterThan(30);
    const documented = Object.entries(document.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method} ${path}`),
    );
    const served = routes.map((route) => `${route.method} ${route.url.replace(/:(\w+)/g, '{$1}')}`);
    expect([...documented].sort()).toEqual([...served].sort());
  });

  it('references a schema for every request body and every JSON response, and each exists', () => {
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const where = `${method} ${path}`;
        if (['post', 'put', 'patch'].includes(method)) expect(operation.requestBody, where).toBeDefined();
        expect(operation.responses.default?.content?.['application/json']?.schema.$ref, where).toBe('#/components/schemas/Status');
        for (const response of Object.values(operation.responses)) {
          for (const media of Object.values(response.content ?? {})) {
            const reference = media.schema.$ref;
            if (reference)
              expect(document.components.schemas[reference.replace('#/components/schemas/', '')], `${where} → ${reference}`).toBeDefined();
          }
        }
      }
    }
  });

  it('derives schemas from zod: strictness, defaults and required fields', () => {
    const create = document.components.schemas.EnvironmentCreate as {
      additionalProperties: boolean;
      required: string[];
      properties: { spec: { properties: { desiredPhase: { default: string; enum: string[] } }; required?: string[] } };
    };
    expect(create.additionalProperties).toBe(false);
    expect(create.required).toEqual(['spec']);
    expect(create.properties.spec.properties.desiredPhase).toMatchObject({ default: 'Running', enum: ['Running', 'Stopped', 'Deleted'] });
    expect(create.properties.spec.required).toEqual(['source']);
    const environment = document.components.schemas.Environment as { required: string[] };
    expect(environment.required).toEqual(expect.arrayContaining(['kind', 'apiVersion', 'metadata', 'spec', 'status']));
  });
});
