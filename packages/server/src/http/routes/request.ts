// Request checks shared by the resource routes: JSON object bodies, accepted media types, list query parameters.
import { InvalidError, WarrenError } from '@warren/base';
import type { FastifyRequest } from 'fastify';
import { isJsonObject } from '../merge-patch.js';

/** A request body after {@link requireObject}. */
export type Body = Record<string, unknown>;

/** Media types of create, status and action bodies. */
export const JSON_ONLY = ['application/json'] as const;

/** Media types of a PATCH body (RFC 7396 merge patch; plain JSON is read the same way). */
export const PATCH_TYPES = ['application/merge-patch+json', 'application/json'] as const;

/** @throws {WarrenError} 400 BadRequest unless `body` is a JSON object. */
export function requireObject(body: unknown): Body {
  if (!isJsonObject(body)) throw new InvalidError('request body must be a JSON object', [], 'BadRequest', 400);
  return body;
}

/** @throws {WarrenError} 415 when the request has a body whose media type is not one of `allowed`. */
export function requireContentType(request: FastifyRequest, allowed: readonly string[]): void {
  const header = request.headers['content-type'];
  if (header === undefined) return;
  const type = header.split(';')[0]!.trim().toLowerCase();
  if (!allowed.includes(type)) {
    throw new WarrenError('UnsupportedMediaType', 415, `content type "${type}" is not accepted here; use ${allowed.join(' or ')}`);
  }
}

/** Parses `a=b,c=d` (equality-based label selector, Kubernetes "Labels and Selectors"). */
function parseLabelSelector(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of value.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    const match = /^([^=!\s]+)==?([^=\s]*)$/.exec(trimmed);
    if (!match) {
      throw new InvalidError(`labelSelector "${value}" is invalid: use key=value[,key=value]`, [
        { field: 'labelSelector', message: 'must be key=value pairs separated by commas' },
      ]);
    }
    labels[match[1]!] = match[2]!;
  }
  return labels;
}

/** The query parameters of a list or watch (`GET /api/v1/{plural}`). */
export interface ListQuery {
  watch: boolean;
  resourceVersion: string | undefined;
  runnerId: string | undefined;
  labels: Record<string, string> | undefined;
}

/**
 * Reads `watch`, `resourceVersion`, `runnerId` and `labelSelector`; empty values count as absent.
 * @throws {InvalidError} for a parameter given twice, a `watch` other than true/false/1/0, a non-decimal
 *   `resourceVersion` or a malformed `labelSelector`.
 */
export function parseListQuery(query: unknown): ListQuery {
  const params: Record<string, unknown> = isJsonObject(query) ? query : {};
  const single = (name: string): string | undefined => {
    const value = params[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      throw new InvalidError(`query parameter ${name} is given more than once`, [{ field: name, message: 'must be given once' }]);
    }
    return value;
  };
  const watch = single('watch');
  if (watch !== undefined && !['true', 'false', '1', '0', ''].includes(watch)) {
    throw new InvalidError('query parameter watch must be true or false', [{ field: 'watch', message: 'must be true or false' }]);
  }
  const resourceVersion = single('resourceVersion');
  if (resourceVersion !== undefined && resourceVersion !== '' && !/^\d+$/.test(resourceVersion)) {
    throw new InvalidError('query parameter resourceVersion must be a decimal number', [
      { field: 'resourceVersion', message: 'must be a decimal resourceVersion' },
    ]);
  }
  const selector = single('labelSelector');
  const runnerId = single('runnerId');
  return {
    watch: watch === 'true' || watch === '1',
    resourceVersion: resourceVersion === '' ? undefined : resourceVersion,
    runnerId: runnerId === '' ? undefined : runnerId,
    labels: selector === undefined || selector === '' ? undefined : parseLabelSelector(selector),
  };
}
