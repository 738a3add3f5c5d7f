// Shapes of the SSH API: a user's registered public keys (`/api/v1/sshkeys`) and the runner's login check
// (`POST /api/v1/ssh/authorize`), through which the SSH gateway asks the server about every login (zero trust).
import { z } from 'zod';

/**
 * A registered SSH public key of a user. `publicKey` is one OpenSSH `authorized_keys` line without options
 * (`<type> <base64> [comment]`, sshd(8) "AUTHORIZED_KEYS FILE FORMAT"); `fingerprint` is `SHA256:<base64>`
 * as ssh-keygen(1) -l prints it.
 */
export const SshKeySchema = z.object({
  kind: z.literal('SshKey'),
  id: z.string(),
  name: z.string(),
  publicKey: z.string(),
  fingerprint: z.string(),
  createdTime: z.string(),
});
export type SshKey = z.infer<typeof SshKeySchema>;

/** Body of `POST /api/v1/sshkeys`: the key line and an optional name (default: the key's comment). */
export const SshKeyCreateSchema = z.strictObject({
  publicKey: z
    .string()
    .min(16)
    .max(16 * 1024),
  name: z.string().min(1).max(128).optional(),
});
export type SshKeyCreate = z.input<typeof SshKeyCreateSchema>;

/**
 * Body of `POST /api/v1/ssh/authorize` (runner tokens only). `environment` is what the user typed as SSH user
 * name: an environment name or id. Exactly one of `publicKey` (an OpenSSH public key line whose possession the
 * gateway has verified) and `password` (a personal access token) is given.
 */
export const SshAuthorizeRequestSchema = z.strictObject({
  environment: z.string().min(1).max(256),
  username: z.string().max(256).optional(),
  publicKey: z
    .string()
    .max(16 * 1024)
    .optional(),
  password: z.string().max(1024).optional(),
});
export type SshAuthorizeRequest = z.input<typeof SshAuthorizeRequestSchema>;

/**
 * Response of `POST /api/v1/ssh/authorize`: a short-lived access token (the same JWT as an AccessGrant, `aud` =
 * the calling runner, `env` = the environment) that the gateway verifies with the server's JWKS.
 * Denials are a Status 401 (unknown credentials) or 403/404 (not this user's environment, not Running here).
 */
export const SshGrantSchema = z.object({
  token: z.string(),
  expiresTime: z.string(),
  environmentId: z.string(),
  userId: z.string(),
});
export type SshGrant = z.infer<typeof SshGrantSchema>;

/** Name of the Runner `status.info` entry holding the SSH gateway's host key (an OpenSSH public key line). */
export const SSH_HOST_KEY_INFO = 'sshHostKey';
