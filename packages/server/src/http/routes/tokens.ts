// Tokens: minted by the server (the secret is returned once, by the create), redacted in every other response.
import type { Token } from '@warren/api';
import { InvalidError } from '@warren/base';
import { type Principal, authorize, issueToken, randomSuffix, redactToken } from '../../auth/index.js';
import { parseOrThrow } from '../errors.js';
import { KIND_SCHEMAS } from '../schemas.js';
import type { RouteContext } from './context.js';
import type { Body } from './request.js';
import { createNamed, draft, ownerIdOf, type KindStrategy } from './strategy.js';

/**
 * The strategy of Tokens. A create names its runner exactly when its type is Runner, must not be expired already,
 * and gets `token-<8 random chars>` when it has no name.
 */
export function tokenStrategy(context: RouteContext): KindStrategy<'Token'> {
  return {
    kind: 'Token',
    present: redactToken,
    async create(principal: Principal, body: Body): Promise<Token> {
      const input = parseOrThrow(KIND_SCHEMAS.Token.create, body, 'token') as {
        metadata: { name?: string; labels?: Record<string, string> };
        spec: Token['spec'];
      };
      const ownerId = ownerIdOf(principal);
      authorize(principal, 'create', 'Token', draft('Token', input.metadata.name ?? '', ownerId, input.spec));
      const { spec } = input;
      if (spec.type === 'Runner' && spec.runnerName === undefined) {
        throw new InvalidError('a runner token must name its runner', [{ field: 'spec.runnerName', message: 'required for type Runner' }]);
      }
      if (spec.type === 'Personal' && spec.runnerName !== undefined) {
        throw new InvalidError('a personal token names no runner', [{ field: 'spec.runnerName', message: 'only for type Runner' }]);
      }
      if (spec.expiresTime !== undefined && Date.parse(spec.expiresTime) <= context.options.now().getTime()) {
        throw new InvalidError('the token would already be expired', [{ field: 'spec.expiresTime', message: 'must be in the future' }]);
      }
      return createNamed('Token', input.metadata.name ?? (() => `token-${randomSuffix(8)}`), async (name) => {
        const { token } = await issueToken(context.store, {
          name,
          ownerId,
          type: spec.type,
          ...(spec.runnerName === undefined ? {} : { runnerName: spec.runnerName }),
          ...(spec.expiresTime === undefined ? {} : { expiresTime: spec.expiresTime }),
          ...(spec.description === undefined ? {} : { description: spec.description }),
          labels: input.metadata.labels ?? {},
        });
        return token; // the only response that carries status.secret
      });
    },
  };
}
