// EnvironmentClasses: created with an empty status; nothing beyond the generic routes.
import type { EnvironmentClass } from '@warren/api';
import type { Principal } from '../../auth/index.js';
import { parseOrThrow } from '../errors.js';
import { KIND_SCHEMAS } from '../schemas.js';
import type { RouteContext } from './context.js';
import type { Body } from './request.js';
import { createNamed, ownerIdOf, type KindStrategy } from './strategy.js';

/** The strategy of EnvironmentClasses (who may write them is the policy's business: admins). */
export function environmentClassStrategy(context: RouteContext): KindStrategy<'EnvironmentClass'> {
  return {
    kind: 'EnvironmentClass',
    create(principal: Principal, body: Body): Promise<EnvironmentClass> {
      const input = parseOrThrow(KIND_SCHEMAS.EnvironmentClass.create, body, 'environment class') as {
        metadata: { name: string; labels?: Record<string, string> };
        spec: EnvironmentClass['spec'];
      };
      const ownerId = ownerIdOf(principal);
      return createNamed('EnvironmentClass', input.metadata.name, (name) =>
        context.store.create('EnvironmentClass', { name, ownerId, labels: input.metadata.labels ?? {}, spec: input.spec, status: {} }),
      );
    },
  };
}
