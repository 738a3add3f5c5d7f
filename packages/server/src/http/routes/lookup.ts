// Finding the object a request names: `{id}` in a path is an id or a name.
import type { Kind, ResourceByKind } from '@warren/api';
import { ConflictError, NotFoundError } from '@warren/base';
import { authorize, listScope, type ListScope, type Principal, type Verb } from '../../auth/index.js';
import type { ResourceStore } from '../../storage/index.js';
import { ownerIdOf } from './strategy.js';

type AnyObject = ResourceByKind[Kind];

function matchesScope(object: AnyObject, scope: ListScope): boolean {
  const filter = scope.filter;
  if (filter.ownerId !== undefined && object.metadata.ownerId !== filter.ownerId) return false;
  if (filter.runnerId !== undefined && (object.kind !== 'Environment' || object.status.runnerId !== filter.runnerId)) return false;
  return scope.visible ? scope.visible(object) : true;
}

/**
 * Finds an object by id, else by name, and checks `verb` on it. Only Environments share names (across owners):
 * then the one the principal may see is taken, else the one it owns.
 * @throws {NotFoundError} when there is none (or the principal may not know of it), {ForbiddenError} when `verb`
 *   is denied, {ConflictError} when several visible objects have the name.
 */
export async function resolveObject<K extends Kind>(
  store: ResourceStore,
  principal: Principal,
  kind: K,
  idOrName: string,
  verb: Verb,
): Promise<ResourceByKind[K]> {
  let object: AnyObject | undefined = await store.get(kind, idOrName);
  if (!object) {
    const candidates: AnyObject[] = await store.getByName(kind, idOrName);
    if (candidates.length > 1) {
      // Prefer what the principal may see, then what it owns.
      let scope: ListScope | undefined;
      try {
        scope = listScope(principal, kind);
      } catch {
        scope = undefined;
      }
      const visible = candidates.filter((candidate) => scope !== undefined && matchesScope(candidate, scope));
      const owned = visible.filter((candidate) => candidate.metadata.ownerId === ownerIdOf(principal));
      if (owned.length === 1) object = owned[0];
      else if (visible.length === 1) object = visible[0];
      else if (visible.length > 1) {
        throw new ConflictError(`several ${kind} objects are named "${idOrName}"; address it by id`, 'Conflict', [
          { field: 'id', message: 'name is ambiguous' },
        ]);
      } else object = candidates[0];
    } else {
      object = candidates[0];
    }
  }
  if (!object) throw new NotFoundError(kind, idOrName);
  authorize(principal, verb, kind, object);
  return object as ResourceByKind[K];
}
