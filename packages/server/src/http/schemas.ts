// The zod schemas of each kind as the HTTP layer uses them: one table drives validation and the OpenAPI document.
import {
  EnvironmentClassCreateSchema,
  EnvironmentClassPatchSchema,
  EnvironmentClassSchema,
  EnvironmentClassSpecSchema,
  EnvironmentCreateSchema,
  EnvironmentPatchSchema,
  EnvironmentSchema,
  EnvironmentSpecSchema,
  EnvironmentStatusSchema,
  KINDS,
  PatchMetaSchema,
  RunnerCreateSchema,
  RunnerPatchSchema,
  RunnerSchema,
  RunnerSpecSchema,
  RunnerStatusSchema,
  TokenCreateSchema,
  TokenSchema,
  TokenSpecSchema,
  UserCreateSchema,
  UserPatchSchema,
  UserSchema,
  UserSpecSchema,
  statusUpdateSchema,
  type Kind,
} from '@warren/api';
import { z } from 'zod';

/**
 * Body of `PATCH /api/v1/tokens/{id}`: labels and the description only. A token's type, runner and expiry are
 * fixed at creation (like GitHub's fine-grained tokens): mint a new token instead.
 */
export const TokenPatchSchema = z.strictObject({
  metadata: PatchMetaSchema.optional(),
  spec: z.strictObject({ description: z.string().max(256).optional() }).optional(),
});

/** Response of `GET /api/v1/whoami`. `id` is the user id, or the runner id (empty before the runner registers). */
export const WhoamiSchema = z.object({
  kind: z.enum(['User', 'Runner']),
  id: z.string(),
  name: z.string(),
  admin: z.boolean(),
});
export type Whoami = z.infer<typeof WhoamiSchema>;

/** The schemas of one kind. `status` is set for kinds with a `PUT .../status` subresource. */
export interface KindSchemas {
  kind: Kind;
  plural: string;
  resource: z.ZodType;
  create: z.ZodType;
  /** Checks the shape of a merge patch (with nulls removed). */
  patch: z.ZodType;
  /** Validates the merged spec, applying defaults. */
  spec: z.ZodType;
  /** Body of `PUT .../status`, when the kind has one. */
  statusUpdate?: z.ZodType;
}

/** Schemas of every served kind, in URL order. */
export const KIND_SCHEMAS: Record<Kind, KindSchemas> = {
  Environment: {
    kind: 'Environment',
    plural: KINDS.Environment,
    resource: EnvironmentSchema,
    create: EnvironmentCreateSchema,
    patch: EnvironmentPatchSchema,
    spec: EnvironmentSpecSchema,
    statusUpdate: statusUpdateSchema(EnvironmentStatusSchema),
  },
  Runner: {
    kind: 'Runner',
    plural: KINDS.Runner,
    resource: RunnerSchema,
    create: RunnerCreateSchema,
    patch: RunnerPatchSchema,
    spec: RunnerSpecSchema,
    statusUpdate: statusUpdateSchema(RunnerStatusSchema),
  },
  EnvironmentClass: {
    kind: 'EnvironmentClass',
    plural: KINDS.EnvironmentClass,
    resource: EnvironmentClassSchema,
    create: EnvironmentClassCreateSchema,
    patch: EnvironmentClassPatchSchema,
    spec: EnvironmentClassSpecSchema,
  },
  User: {
    kind: 'User',
    plural: KINDS.User,
    resource: UserSchema,
    create: UserCreateSchema,
    patch: UserPatchSchema,
    spec: UserSpecSchema,
  },
  Token: {
    kind: 'Token',
    plural: KINDS.Token,
    resource: TokenSchema,
    create: TokenCreateSchema,
    patch: TokenPatchSchema,
    spec: TokenSpecSchema,
  },
};
