// Runners: created Inactive (registration fills the status in); the status subresource stores what is sent.
import { RunnerStatusSchema, type Runner } from '@warren/api';
import { type Principal, authorize } from '../../auth/index.js';
import { parseOrThrow } from '../errors.js';
import { KIND_SCHEMAS } from '../schemas.js';
import type { RouteContext } from './context.js';
import type { Body } from './request.js';
import { createNamed, draft, ownerIdOf, type KindStrategy } from './strategy.js';

/** The strategy of Runners: a create is authorized on the object to be (a runner token creates only its own runner). */
export function runnerStrategy(context: RouteContext): KindStrategy<'Runner'> {
  return {
    kind: 'Runner',
    create(principal: Principal, body: Body): Promise<Runner> {
      const input = parseOrThrow(KIND_SCHEMAS.Runner.create, body, 'runner') as {
        metadata: { name: string; labels?: Record<string, string> };
        spec: Runner['spec'];
      };
      const ownerId = ownerIdOf(principal);
      authorize(principal, 'create', 'Runner', draft('Runner', input.metadata.name, ownerId, input.spec));
      return createNamed('Runner', input.metadata.name, (name) =>
        context.store.create('Runner', {
          name,
          ownerId,
          labels: input.metadata.labels ?? {},
          spec: input.spec,
          status: RunnerStatusSchema.parse({ phase: 'Inactive' }),
        }),
      );
    },
  };
}
