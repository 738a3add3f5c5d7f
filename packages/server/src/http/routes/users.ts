// Users: created with an empty status; deleting a user deletes its tokens.
import type { User } from '@warren/api';
import type { Principal } from '../../auth/index.js';
import type { ResourceStore } from '../../storage/index.js';
import { parseOrThrow } from '../errors.js';
import { KIND_SCHEMAS } from '../schemas.js';
import type { RouteContext } from './context.js';
import type { Body } from './request.js';
import { createNamed, isReason, ownerIdOf, type KindStrategy } from './strategy.js';

/** Deletes every token of `userId`; one deleted meanwhile is no error. */
async function deleteTokensOf(store: ResourceStore, userId: string): Promise<void> {
  const tokens = await store.list('Token', { ownerId: userId });
  for (const token of tokens.items) {
    await store.delete('Token', token.metadata.id).catch((error: unknown) => {
      if (!isReason(error, 'NotFound')) throw error;
    });
  }
}

/** The strategy of Users. */
export function userStrategy(context: RouteContext): KindStrategy<'User'> {
  const { store } = context;
  return {
    kind: 'User',
    create(principal: Principal, body: Body): Promise<User> {
      const input = parseOrThrow(KIND_SCHEMAS.User.create, body, 'user') as {
        metadata: { name: string; labels?: Record<string, string> };
        spec: User['spec'];
      };
      const ownerId = ownerIdOf(principal);
      return createNamed('User', input.metadata.name, (name) =>
        store.create('User', { name, ownerId, labels: input.metadata.labels ?? {}, spec: input.spec, status: {} }),
      );
    },
    async delete(_principal: Principal, object: User): Promise<User> {
      const deleted = await store.delete('User', object.metadata.id);
      await deleteTokensOf(store, deleted.metadata.id);
      return deleted;
    },
  };
}
