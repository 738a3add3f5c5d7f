// The routes every kind has, wired once: list/watch, get, create, patch (RFC 7396), delete and, for kinds with
// one, the status subresource. What differs between kinds comes from the kind's strategy (strategy.ts).
import { API_VERSION, LabelsSchema, type Kind, type Resource, type ResourceByKind, type ResourceList } from '@warren/api';
import { InvalidError } from '@warren/base';
import type { FastifyInstance } from 'fastify';
import { ForbiddenError, authorize, listScope } from '../../auth/index.js';
import type { ObjectFilter } from '../../storage/index.js';
import { parseOrThrow } from '../errors.js';
import { applyMergePatch, isJsonObject, withoutNulls } from '../merge-patch.js';
import { KIND_SCHEMAS } from '../schemas.js';
import { serveWatch } from '../watch.js';
import type { RouteContext } from './context.js';
import { resolveObject } from './lookup.js';
import { JSON_ONLY, PATCH_TYPES, parseListQuery, requireContentType, requireObject } from './request.js';
import type { KindStrategy } from './strategy.js';

/**
 * Registers the generic routes of one kind: `/api/v1/{plural}` (GET list|watch, POST), `/api/v1/{plural}/{id}`
 * (GET, PATCH, DELETE) and, when the kind's schemas have a status update, `PUT /api/v1/{plural}/{id}/status`.
 * `{id}` is an id or a name. Errors are thrown as WarrenErrors; the app's error handler answers with a Status.
 */
export function registerKindRoutes<K extends Kind>(app: FastifyInstance, context: RouteContext, strategy: KindStrategy<K>): void {
  type KindObject = ResourceByKind[K];
  const { store } = context;
  const { kind } = strategy;
  const schemas = KIND_SCHEMAS[kind];
  const base = `/api/v1/${schemas.plural}`;
  const present = (object: KindObject): Resource => (strategy.present ? strategy.present(object) : object);

  // ---------------------------------------------------------------- list / watch
  app.get(base, async (request, reply) => {
    const principal = context.principalOf(request);
    const query = parseListQuery(request.query);
    authorize(principal, 'list', kind);
    const scope = listScope(principal, kind);
    const filter: ObjectFilter = { ...scope.filter };
    if (query.labels) filter.labels = query.labels;
    if (query.runnerId !== undefined) {
      if (strategy.listByRunnerId !== true) {
        throw new InvalidError('runnerId filters environments only', [{ field: 'runnerId', message: 'only for environments' }]);
      }
      if (filter.runnerId !== undefined && filter.runnerId !== query.runnerId) {
        throw new ForbiddenError('a runner token reads only the environments scheduled to its own runner');
      }
      filter.runnerId = query.runnerId;
    }
    if (query.watch) {
      const served = serveWatch(reply, {
        store,
        kind,
        filter,
        visible: scope.visible,
        fromResourceVersion: query.resourceVersion,
        // The store's watch of `kind` yields objects of that kind only.
        present: (object) => present(object as KindObject),
        timing: context.options.watch,
        logger: context.logger,
        requestId: request.id,
        serverSignal: context.closing,
      });
      context.activeWatches.add(served);
      try {
        await served;
      } finally {
        context.activeWatches.delete(served);
      }
      return reply;
    }
    const listed = await store.list(kind, filter);
    const items: KindObject[] = scope.visible ? listed.items.filter(scope.visible) : listed.items;
    const list: ResourceList<Resource> = {
      kind: `${kind}List`,
      apiVersion: API_VERSION,
      metadata: { resourceVersion: listed.resourceVersion },
      items: items.map(present),
    };
    return list;
  });

  // ---------------------------------------------------------------- get
  app.get<{ Params: { id: string } }>(`${base}/:id`, async (request) => {
    const principal = context.principalOf(request);
    return present(await resolveObject(store, principal, kind, request.params.id, 'get'));
  });

  // ---------------------------------------------------------------- create
  app.post(base, async (request, reply) => {
    requireContentType(request, JSON_ONLY);
    const principal = context.principalOf(request);
    authorize(principal, 'create', kind);
    const body = requireObject(request.body);
    const created = await strategy.create(principal, body);
    void reply.code(201);
    return created;
  });

  // ---------------------------------------------------------------- patch
  app.patch<{ Params: { id: string } }>(`${base}/:id`, async (request) => {
    requireContentType(request, PATCH_TYPES);
    const principal = context.principalOf(request);
    const body = requireObject(request.body);
    const shape = parseOrThrow(schemas.patch, withoutNulls(body), `${kind} patch`) as { metadata?: { resourceVersion?: string } };
    const object = await resolveObject(store, principal, kind, request.params.id, 'update');
    const rawMetadata = isJsonObject(body.metadata) ? body.metadata : {};
    if (strategy.prepareUpdate) await strategy.prepareUpdate(body);
    const updated = await store.update(
      kind,
      object.metadata.id,
      (current) => {
        authorize(principal, 'update', kind, current);
        let labels = current.metadata.labels;
        if ('labels' in rawMetadata) {
          labels = parseOrThrow(
            LabelsSchema,
            applyMergePatch(current.metadata.labels, rawMetadata.labels) ?? {},
            'labels',
            'metadata.labels',
          );
        }
        let spec = current.spec;
        if ('spec' in body)
          spec = parseOrThrow(schemas.spec, applyMergePatch(current.spec, body.spec), `${kind} spec`, 'spec') as KindObject['spec'];
        strategy.validateUpdate?.(current, spec);
        return { ...current, metadata: { ...current.metadata, labels }, spec };
      },
      shape.metadata?.resourceVersion === undefined ? {} : { expectedResourceVersion: shape.metadata.resourceVersion },
    );
    return present(updated);
  });

  // ---------------------------------------------------------------- delete
  app.delete<{ Params: { id: string } }>(`${base}/:id`, async (request) => {
    const principal = context.principalOf(request);
    const object = await resolveObject(store, principal, kind, request.params.id, 'delete');
    const deleted = strategy.delete ? await strategy.delete(principal, object) : await store.delete(kind, object.metadata.id);
    return present(deleted);
  });

  // ---------------------------------------------------------------- status subresource
  const statusUpdate = schemas.statusUpdate;
  if (statusUpdate) {
    app.put<{ Params: { id: string } }>(`${base}/:id/status`, async (request) => {
      requireContentType(request, JSON_ONLY);
      const principal = context.principalOf(request);
      const body = requireObject(request.body);
      const parsed = parseOrThrow(statusUpdate, body, `${kind} status`) as {
        metadata?: { resourceVersion?: string };
        status: KindObject['status'];
      };
      const object = await resolveObject(store, principal, kind, request.params.id, 'updateStatus');
      const updated = await store.update(
        kind,
        object.metadata.id,
        (current) => {
          authorize(principal, 'updateStatus', kind, current);
          const status = strategy.mergeStatus ? strategy.mergeStatus(principal, current, parsed.status) : parsed.status;
          return { ...current, status };
        },
        parsed.metadata?.resourceVersion === undefined ? {} : { expectedResourceVersion: parsed.metadata.resourceVersion },
      );
      return present(updated);
    });
  }
}
