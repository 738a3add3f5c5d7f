// The OpenAPI 3.1 document of the API, generated from the same zod schemas that validate requests
// (zod 4 `z.toJSONSchema`, JSON Schema 2020-12, which OpenAPI 3.1 uses as its schema dialect).
import {
  API_VERSION,
  AccessGrantSchema,
  PortOpenSchema,
  SshAuthorizeRequestSchema,
  SshGrantSchema,
  SshKeyCreateSchema,
  SshKeySchema,
  StatusSchema,
} from '@warren/api';
import { z } from 'zod';
import { KIND_SCHEMAS, WhoamiSchema } from './schemas.js';

type JsonObject = Record<string, unknown>;

/** Converts a zod schema for requests (`input`: defaults optional) or responses (`output`). */
function toSchema(schema: z.ZodType, io: 'input' | 'output'): JsonObject {
  const converted = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonObject;
  delete converted.$schema;
  return converted;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ 'application/json': { schema: ref(name) } });
const errorResponse = { description: 'Error (Status envelope)', content: json('Status') };
const idParameter = {
  name: 'id',
  in: 'path',
  required: true,
  description: 'Object id or name',
  schema: { type: 'string' },
};

/**
 * Builds the OpenAPI 3.1 document served at `GET /api/v1/openapi.json`: every path and method, with request body
 * and response schemas taken from the zod schemas in @warren/api. Every error response is the Status envelope.
 * @returns a plain JSON object.
 */
export function buildOpenApiDocument(): JsonObject {
  const schemas: Record<string, JsonObject> = {
    Status: toSchema(StatusSchema, 'output'),
    AccessGrant: toSchema(AccessGrantSchema, 'output'),
    Whoami: toSchema(WhoamiSchema, 'output'),
    JsonWebKeySet: {
      type: 'object',
      description: 'JSON Web Key Set (RFC 7517 §5) of the keys that sign access tokens',
      properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true } } },
      required: ['keys'],
    },
    Health: { type: 'object', properties: { status: { const: 'ok' } }, required: ['status'] },
  };
  const paths: Record<string, Record<string, JsonObject>> = {};
  const operation = (path: string, method: string, value: JsonObject) => {
    paths[path] = { ...paths[path], [method]: value };
  };

  for (const entry of Object.values(KIND_SCHEMAS)) {
    const { kind, plural } = entry;
    schemas[kind] = toSchema(entry.resource, 'output');
    schemas[`${kind}Create`] = toSchema(entry.create, 'input');
    schemas[`${kind}Patch`] = toSchema(entry.patch, 'input');
    schemas[`${kind}List`] = {
      type: 'object',
      properties: {
        kind: { const: `${kind}List` },
        apiVersion: { const: API_VERSION },
        metadata: { type: 'object', properties: { resourceVersion: { type: 'string' } }, required: ['resourceVersion'] },
        items: { type: 'array', items: ref(kind) },
      },
      required: ['kind', 'apiVersion', 'metadata', 'items'],
    };
    schemas[`${kind}WatchEvent`] = {
      type: 'object',
      description: 'One NDJSON line of a watch. BOOKMARK carries only metadata.resourceVersion; ERROR carries a Status.',
      properties: {
        type: { enum: ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'] },
        object: { oneOf: [ref(kind), ref('Status'), { type: 'object' }] },
      },
      required: ['type', 'object'],
    };
    const base = `/api/v1/${plural}`;
    const tags = [plural];
    operation(base, 'get', {
      operationId: `list${kind}`,
      summary: `List or watch ${plural}`,
      tags,
      parameters: [
        { name: 'watch', in: 'query', schema: { type: 'boolean' }, description: 'Stream NDJSON watch events instead of a list' },
        {
          name: 'resourceVersion',
          in: 'query',
          schema: { type: 'string', pattern: '^\\d+$' },
          description: 'Resume a watch after this resourceVersion (410 Gone when too old)',
        },
        { name: 'labelSelector', in: 'query', schema: { type: 'string' }, description: 'key=value[,key=value]' },
        ...(kind === 'Environment'
          ? [{ name: 'runnerId', in: 'query', schema: { type: 'string' }, description: 'Only environments scheduled to this runner' }]
          : []),
      ],
      responses: {
        '200': {
          description: `${kind}List, or with watch=true a stream of ${kind}WatchEvent lines`,
          content: { 'application/json': { schema: ref(`${kind}List`) }, 'application/x-ndjson': { schema: ref(`${kind}WatchEvent`) } },
        },
        default: errorResponse,
      },
    });
    operation(base, 'post', {
      operationId: `create${kind}`,
      summary: `Create a ${kind}`,
      tags,
      requestBody: { required: true, content: json(`${kind}Create`) },
      responses: { '201': { description: `The created ${kind}`, content: json(kind) }, default: errorResponse },
    });
    const item = `${base}/{id}`;
    operation(item, 'get', {
      operationId: `get${kind}`,
      summary: `Get a ${kind} by id or name`,
      tags,
      parameters: [idParameter],
      responses: { '200': { description: kind, content: json(kind) }, default: errorResponse },
    });
    operation(item, 'patch', {
      operationId: `patch${kind}`,
      summary: `Update a ${kind} with a JSON merge patch (RFC 7396) of metadata.labels and spec`,
      tags,
      parameters: [idParameter],
      requestBody: {
        required: true,
        content: { 'application/merge-patch+json': { schema: ref(`${kind}Patch`) }, 'application/json': { schema: ref(`${kind}Patch`) } },
      },
      responses: { '200': { description: `The updated ${kind}`, content: json(kind) }, default: errorResponse },
    });
    operation(item, 'delete', {
      operationId: `delete${kind}`,
      summary: kind === 'Environment' ? 'Delete an environment (marks it Deleted; its runner removes it)' : `Delete a ${kind}`,
      tags,
      parameters: [idParameter],
      responses: { '200': { description: `The ${kind} as it is after the request`, content: json(kind) }, default: errorResponse },
    });
    if (entry.statusUpdate) {
      schemas[`${kind}StatusUpdate`] = toSchema(entry.statusUpdate, 'input');
      operation(`${item}/status`, 'put', {
        operationId: `update${kind}Status`,
        summary: `Replace the status of a ${kind} (runners and controllers)`,
        tags,
        parameters: [idParameter],
        requestBody: { required: true, content: json(`${kind}StatusUpdate`) },
        responses: { '200': { description: `The updated ${kind}`, content: json(kind) }, default: errorResponse },
      });
    }
  }

  const environmentItem = `/api/v1/${KIND_SCHEMAS.Environment.plural}/{id}`;
  operation(`${environmentItem}/keepalive`, 'post', {
    operationId: 'keepaliveEnvironment',
    summary: 'Record activity now (sets status.lastActivityTime; batched)',
    tags: ['environments'],
    parameters: [idParameter],
    requestBody: { required: false, content: { 'application/json': { schema: { type: 'object' } } } },
    responses: { '200': { description: 'The environment', content: json('Environment') }, default: errorResponse },
  });
  operation(`${environmentItem}/access`, 'post', {
    operationId: 'createEnvironmentAccess',
    summary: "Get a short-lived token for the runner's access API",
    tags: ['environments'],
    parameters: [idParameter],
    requestBody: { required: false, content: { 'application/json': { schema: { type: 'object' } } } },
    responses: { '200': { description: 'Access grant', content: json('AccessGrant') }, default: errorResponse },
  });
  operation('/api/v1/whoami', 'get', {
    operationId: 'whoami',
    summary: 'The calling principal',
    responses: { '200': { description: 'Principal', content: json('Whoami') }, default: errorResponse },
  });
  // SSH keys and the runners' SSH login check (http/ssh.ts).
  schemas.SshKey = toSchema(SshKeySchema, 'output');
  schemas.SshKeyCreate = toSchema(SshKeyCreateSchema, 'input');
  schemas.SshKeyList = {
    type: 'object',
    properties: { kind: { const: 'SshKeyList' }, items: { type: 'array', items: { $ref: '#/components/schemas/SshKey' } } },
    required: ['items'],
  };
  schemas.SshAuthorizeRequest = toSchema(SshAuthorizeRequestSchema, 'input');
  schemas.SshGrant = toSchema(SshGrantSchema, 'output');
  const sshBody = (schema: string) => ({ required: true, content: json(schema) });
  operation('/api/v1/sshkeys', 'get', {
    operationId: 'listSshKeys',
    summary: "The caller's SSH public keys",
    tags: ['ssh'],
    responses: { '200': { description: 'Keys', content: json('SshKeyList') }, default: errorResponse },
  });
  operation('/api/v1/sshkeys', 'post', {
    operationId: 'createSshKey',
    summary: 'Register an SSH public key',
    tags: ['ssh'],
    requestBody: sshBody('SshKeyCreate'),
    responses: { '201': { description: 'Registered', content: json('SshKey') }, default: errorResponse },
  });
  operation('/api/v1/sshkeys/{id}', 'delete', {
    operationId: 'deleteSshKey',
    summary: 'Remove an SSH public key (id, name or fingerprint)',
    tags: ['ssh'],
    parameters: [idParameter],
    responses: { '200': { description: 'Removed', content: json('SshKey') }, default: errorResponse },
  });
  operation('/api/v1/ssh/authorize', 'post', {
    operationId: 'authorizeSsh',
    summary: 'Runners only: check an SSH login and get a short-lived grant',
    tags: ['ssh'],
    requestBody: sshBody('SshAuthorizeRequest'),
    responses: { '200': { description: 'Grant', content: json('SshGrant') }, default: errorResponse },
  });
  // Port URLs (http/ports.ts).
  schemas.PortOpen = toSchema(PortOpenSchema, 'output');
  operation(`${environmentItem}/ports/{port}/open`, 'post', {
    operationId: 'openEnvironmentPort',
    summary: "A port's URL on the runner's proxy with a short-lived token (owner or admin)",
    tags: ['environments'],
    parameters: [idParameter, { name: 'port', in: 'path', required: true, schema: { type: 'integer', minimum: 1, maximum: 65535 } }],
    requestBody: { required: false, content: { 'application/json': { schema: { type: 'object' } } } },
    responses: { '200': { description: 'URL and token expiry', content: json('PortOpen') }, default: errorResponse },
  });
  const anonymous = { security: [] };
  operation('/api/v1/keys', 'get', {
    operationId: 'getKeys',
    summary: 'Public keys that sign access tokens (JWKS)',
    ...anonymous,
    responses: { '200': { description: 'JWKS', content: json('JsonWebKeySet') }, default: errorResponse },
  });
  operation('/api/v1/openapi.json', 'get', {
    operationId: 'getOpenApi',
    summary: 'This document',
    ...anonymous,
    responses: {
      '200': { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } },
      default: errorResponse,
    },
  });
  operation('/healthz', 'get', {
    operationId: 'health',
    summary: 'Liveness',
    ...anonymous,
    responses: { '200': { description: 'Healthy', content: json('Health') }, default: errorResponse },
  });
  operation('/metrics', 'get', {
    operationId: 'getMetrics',
    summary: 'Prometheus metrics (admin users, or the metrics token as bearer)',
    responses: {
      '200': { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } },
      default: errorResponse,
    },
  });

  return {
    openapi: '3.1.0',
    info: {
      title: 'Warren API',
      version: API_VERSION,
      description: 'Control plane of Warren, a self-hostable platform for cloud development environments.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: '/' }],
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas,
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'Personal access token (wrn_...) or runner token (wrr_...)' },
      },
    },
  };
}
