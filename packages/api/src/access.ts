// The runner's access API: how a client execs, follows logs or opens a terminal in an environment.
// The client first asks the server for a short-lived, audience-bound access token
// (`POST /api/v1/environments/{id}/access`), then talks to the runner's access endpoint with it.
// The runner verifies the token with the server's public keys (`GET /api/v1/keys`, a JWKS).
import type { Reason } from '@warren/base';
import { z } from 'zod';

/** Response of `POST /api/v1/environments/{id}/access`. */
export const AccessGrantSchema = z.object({
  /** A JWT (EdDSA) with `aud` = runner id, `sub` = user id, `env` = environment id; expires in minutes. */
  token: z.string(),
  expiresTime: z.string(),
  /** Base URL of the runner access API, e.g. `http://127.0.0.1:7081`. */
  endpoint: z.string(),
  environmentId: z.string(),
});
export type AccessGrant = z.infer<typeof AccessGrantSchema>;

/**
 * Exec WebSocket protocol at `GET {endpoint}/v1/environments/{id}/exec?token=...` (upgrade).
 * Client → runner: first a text frame `ExecStart`; then binary frames of stdin bytes prefixed by channel
 * byte 0, and text frames `{type:"resize"}` / `{type:"stdin-eof"}`.
 * Runner → client: binary frames prefixed by channel byte 1 (stdout) or 2 (stderr), then one text
 * frame `{type:"exit", code}` (or `{type:"error", message, reason}`) before closing.
 * The channel-byte framing follows Kubernetes' `channel.k8s.io` subprotocol.
 */
export const ExecStartSchema = z.strictObject({
  type: z.literal('start'),
  argv: z.array(z.string()).min(1),
  tty: z.boolean().default(false),
  cols: z.number().int().positive().optional(),
  rows: z.number().int().positive().optional(),
  /** Extra environment variables, `NAME=value`. */
  env: z.array(z.string()).optional(),
  /** Overrides the workspace folder as working directory. */
  cwd: z.string().optional(),
  /** Overrides remoteUser. */
  user: z.string().optional(),
});
export type ExecStart = z.input<typeof ExecStartSchema>;

/** Control messages of the exec protocol (text frames). */
export type ExecControl =
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'stdin-eof' }
  | { type: 'exit'; code: number }
  | { type: 'error'; reason: Reason; message: string };

/** Channel bytes of binary exec frames. */
export const ExecChannel = { stdin: 0, stdout: 1, stderr: 2 } as const;

/**
 * Terminal WebSocket protocol at
 * `GET {endpoint}/v1/environments/{id}/terminal?token=...[&session=<id>][&cols=N&rows=N]` (upgrade): an
 * interactive login shell of remoteUser in the workspace folder, on a pty.
 * Without `session` a new terminal session starts; with it, the runner reattaches to that session (same user
 * and environment; it outlives a dropped socket for a grace period, 5 minutes by default) and first replays
 * its scrollback (the last 256 KiB of output or more). A session not found is refused with HTTP 404
 * `TerminalSessionNotFound`.
 * Runner → client: first a text frame {@link TerminalControl} `session`; then binary frames prefixed by
 * channel byte 1 ({@link ExecChannel} stdout) carrying terminal output, the `replayBytes` of scrollback first;
 * finally `exit` (the shell ended) or `error` before the runner closes the socket.
 * Client → runner: binary frames prefixed by channel byte 0 (input), and text frames `resize` or
 * `terminate` (end the session now instead of keeping it for a reconnect).
 * A second connection to the same session takes it over; the first is closed with code
 * {@link TERMINAL_TAKEN_OVER_CLOSE_CODE}.
 */
export type TerminalControl =
  | {
      type: 'session';
      /** Pass as `?session=` to reconnect. */
      session: string;
      /** True when this connection reattached to an existing session. */
      resumed: boolean;
      /** Bytes of scrollback replayed right after this frame (0 for a new session). */
      replayBytes: number;
    }
  | { type: 'resize'; cols: number; rows: number }
  | { type: 'terminate' }
  | { type: 'exit'; code: number }
  | { type: 'error'; reason: Reason; message: string };

/** WebSocket close code sent to a terminal connection whose session was attached by a newer connection. */
export const TERMINAL_TAKEN_OVER_CLOSE_CODE = 4001;
