// The SFTP subsystem of the SSH gateway (draft-ietf-secsh-filexfer-02, SFTP version 3, as OpenSSH speaks it).
// Devcontainer images rarely ship OpenSSH's sftp-server (the Debian test images do not), and OpenSSH 9's scp
// uses SFTP by default, so the gateway serves SFTP itself (ssh2's SFTP server) and performs each file operation
// with the environment's own tools through the backend's exec: POSIX sh, coreutils (stat, head, tail, dd, mkdir,
// mv, rm, ln, readlink, realpath, chmod, touch, truncate) and findutils (find -printf), all Essential in Debian.
// Running them through exec makes them run as remoteUser inside the environment, so the environment's own
// permissions apply and no host path is ever touched. Reads fetch up to 1 MiB ahead per exec; writes are
// buffered and flushed in runs of up to 1 MiB (write-behind: an error is reported on the next write or close).
// (An environment's own sftp-server binary is not used: ssh2 exposes only its parsed SFTP stream, not the raw
// channel, for the sftp subsystem.)
// Legacy `scp -O` (the rcp protocol) needs an `scp` binary in the environment and is not served otherwise.
import type { Readable } from 'node:stream';
import { type Logger, errorMessage } from '@warren/base';
import ssh2 from 'ssh2';
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2';
import type { EnvironmentBackend } from '../environment/index.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** Bytes fetched per read exec, and the most write-behind data buffered per handle. */
const CHUNK_BYTES = 1024 * 1024;

/** Options of {@link serveSftp}. */
export interface SftpOptions {
  backend: EnvironmentBackend;
  environmentId: string;
  logger: Logger;
  onActivity: () => void;
}

interface Result {
  code: number;
  stdout: Buffer;
  stderr: string;
}

class SftpStatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

interface FileHandle {
  type: 'file';
  path: string;
  /** Read-ahead window. */
  cache?: { offset: number; data: Buffer };
  /** Write-behind run: contiguous bytes from `offset`. */
  pending?: { offset: number; chunks: Buffer[]; bytes: number };
  /** A failed flush, reported on the next write or close. */
  failure?: SftpStatusError;
  /** Flushes run one after another (each awaits the previous). */
  flushing: Promise<void>;
}
interface DirectoryHandle {
  type: 'directory';
  path: string;
  done: boolean;
}

async function collect(stream: Readable | undefined): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Serves the SFTP subsystem on an accepted session channel. Errors of single operations become SFTP status replies;
 * nothing here throws.
 */
export function serveSftp(sftp: SFTPWrapper, options: SftpOptions): void {
  const { backend, environmentId, logger } = options;
  const run = async (script: string, args: string[], stdin?: Buffer): Promise<Result> => {
    const session = await backend.exec(environmentId, { argv: ['/bin/sh', '-c', script, 'sh', ...args], tty: false }, logger);
    session.stdin.on('error', () => {});
    session.stdin.end(stdin);
    const [stdout, stderr, code] = await Promise.all([collect(session.stdout), collect(session.stderr), session.exit]);
    return { code, stdout, stderr: stderr.toString('utf8') };
  };
  const check = (result: Result): Result => {
    if (result.code === 0) return result;
    const message = result.stderr.trim().split('\n').pop() ?? '';
    if (/No such file|ENOENT|cannot stat/i.test(message)) throw new SftpStatusError(STATUS_CODE.NO_SUCH_FILE, 'No such file');
    if (/Permission denied|EACCES|Operation not permitted/i.test(message))
      throw new SftpStatusError(STATUS_CODE.PERMISSION_DENIED, 'Permission denied');
    throw new SftpStatusError(STATUS_CODE.FAILURE, message || `failed with code ${result.code}`);
  };

  serveWithTools(sftp, run, check, options);
}

function serveWithTools(
  sftp: SFTPWrapper,
  run: (script: string, args: string[], stdin?: Buffer) => Promise<Result>,
  check: (result: Result) => Result,
  options: SftpOptions,
): void {
  // The client's EOF ends the subsystem: report exit status 0 (RFC 4254 §6.10, as sshd does when sftp-server
  // exits) and close the channel; without the close, OpenSSH's scp and sftp wait forever.
  sftp.on('end', () => {
    const internals = sftp as unknown as {
      _protocol?: { exitStatus(channel: number, status: number): void };
      outgoing?: { id: number; state: string };
    };
    if (internals.outgoing?.state === 'open') internals._protocol?.exitStatus(internals.outgoing.id, 0);
    sftp.end();
  });
  const handles = new Map<string, FileHandle | DirectoryHandle>();
  let nextHandle = 0;
  const newHandle = (value: FileHandle | DirectoryHandle): Buffer => {
    const id = String(nextHandle++);
    handles.set(id, value);
    return Buffer.from(id);
  };
  const handleOf = (raw: Buffer): FileHandle | DirectoryHandle => {
    const handle = handles.get(raw.toString());
    if (!handle) throw new SftpStatusError(STATUS_CODE.FAILURE, 'invalid handle');
    return handle;
  };
  const fileOf = (raw: Buffer): FileHandle => {
    const handle = handleOf(raw);
    if (handle.type !== 'file') throw new SftpStatusError(STATUS_CODE.FAILURE, 'not a file handle');
    return handle;
  };

  /** Runs one request; errors become a status reply. */
  const serve = (reqId: number, work: () => Promise<void> | void) => {
    options.onActivity();
    Promise.resolve()
      .then(work)
      .catch((error: unknown) => {
        if (error instanceof SftpStatusError) sftp.status(reqId, error.code, error.message);
        else {
          options.logger.warn({ error: errorMessage(error) }, 'sftp operation failed');
          sftp.status(reqId, STATUS_CODE.FAILURE, errorMessage(error));
        }
      });
  };

  // stat(1) fields: raw mode (hex), uid, gid, size, atime, mtime.
  const STAT_FORMAT = '%f %u %g %s %X %Y';
  const parseStat = (line: string): Attributes => {
    const [mode, uid, gid, size, atime, mtime] = line.trim().split(' ');
    return {
      mode: parseInt(mode ?? '0', 16),
      uid: Number(uid),
      gid: Number(gid),
      size: Number(size),
      atime: Number(atime),
      mtime: Number(mtime),
    };
  };
  const stat = async (path: string, follow: boolean): Promise<Attributes> =>
    parseStat(check(await run(`stat ${follow ? '-L ' : ''}-c '${STAT_FORMAT}' -- "$1"`, [path])).stdout.toString('utf8'));

  /** Queues the write-behind run for writing (one dd(1) exec per run) and waits for every queued run. */
  const flush = (handle: FileHandle): Promise<void> => {
    const pending = handle.pending;
    handle.pending = undefined;
    if (pending) {
      handle.flushing = handle.flushing.then(async () => {
        try {
          check(
            await run(
              'exec dd of="$1" bs=65536 seek="$2" oflag=seek_bytes conv=notrunc status=none',
              [handle.path, String(pending.offset)],
              Buffer.concat(pending.chunks),
            ),
          );
        } catch (error) {
          handle.failure ??= error instanceof SftpStatusError ? error : new SftpStatusError(STATUS_CODE.FAILURE, errorMessage(error));
        }
      });
    }
    return handle.flushing.then(() => {
      if (handle.failure) throw handle.failure;
    });
  };

  const setAttributes = async (path: string, attrs: Partial<Attributes>): Promise<void> => {
    const steps: string[] = [];
    const args = [path];
    if (typeof attrs.size === 'number') {
      args.push(String(attrs.size));
      steps.push(`truncate -s "$${args.length}" -- "$1"`);
    }
    if (typeof attrs.mode === 'number') {
      args.push((attrs.mode & 0o7777).toString(8));
      steps.push(`chmod "$${args.length}" -- "$1"`);
    }
    if (typeof attrs.atime === 'number' && typeof attrs.mtime === 'number') {
      args.push(String(attrs.atime), String(attrs.mtime));
      steps.push(`touch -a -d "@$${args.length - 1}" -- "$1" && touch -m -d "@$${args.length}" -- "$1"`);
    }
    if (steps.length > 0) check(await run(`set -e; ${steps.join('; ')}`, args));
  };

  sftp.on('REALPATH', (reqId, path) =>
    serve(reqId, async () => {
      const resolved = check(await run('realpath -m -- "$1"', [path === '' ? '.' : path]))
        .stdout.toString('utf8')
        .replace(/\n$/, '');
      sftp.name(reqId, [{ filename: resolved, longname: resolved, attrs: {} as Attributes }]);
    }),
  );
  sftp.on('STAT', (reqId, path) => serve(reqId, async () => sftp.attrs(reqId, await stat(path, true))));
  sftp.on('LSTAT', (reqId, path) => serve(reqId, async () => sftp.attrs(reqId, await stat(path, false))));
  sftp.on('FSTAT', (reqId, raw) =>
    serve(reqId, async () => {
      const handle = handleOf(raw);
      if (handle.type === 'file') await flush(handle);
      sftp.attrs(reqId, await stat(handle.path, true));
    }),
  );
  sftp.on('SETSTAT', (reqId, path, attrs) =>
    serve(reqId, async () => (await setAttributes(path, attrs), sftp.status(reqId, STATUS_CODE.OK))),
  );
  sftp.on('FSETSTAT', (reqId, raw, attrs) =>
    serve(reqId, async () => {
      const handle = fileOf(raw);
      await flush(handle);
      await setAttributes(handle.path, attrs);
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );

  sftp.on('OPEN', (reqId, path, flags, attrs) =>
    serve(reqId, async () => {
      const write = (flags & (OPEN_MODE.WRITE | OPEN_MODE.APPEND)) !== 0;
      const mode = typeof attrs.mode === 'number' ? (attrs.mode & 0o777).toString(8) : '644';
      let script: string;
      if (!write)
        script =
          '[ -e "$1" ] || { echo "No such file" >&2; exit 1; }; [ -d "$1" ] && { echo "is a directory" >&2; exit 1; }; [ -r "$1" ] || { echo "Permission denied" >&2; exit 1; }';
      else {
        const parts: string[] = [];
        if (flags & OPEN_MODE.EXCL) parts.push('[ -e "$1" ] && { echo "file exists" >&2; exit 1; }');
        if (flags & OPEN_MODE.CREAT) parts.push('[ -e "$1" ] || { (umask 077; : > "$1") && chmod "$2" -- "$1"; } || exit 1');
        else parts.push('[ -e "$1" ] || { echo "No such file" >&2; exit 1; }');
        if (flags & OPEN_MODE.TRUNC) parts.push(': > "$1" || exit 1');
        parts.push('[ -w "$1" ] || { echo "Permission denied" >&2; exit 1; }');
        script = parts.join('; ');
      }
      check(await run(script, [path, mode]));
      sftp.handle(reqId, newHandle({ type: 'file', path, flushing: Promise.resolve() }));
    }),
  );

  sftp.on('READ', (reqId, raw, offset, length) =>
    serve(reqId, async () => {
      const handle = fileOf(raw);
      await flush(handle);
      const cached = handle.cache;
      if (!cached || offset < cached.offset || offset + length > cached.offset + cached.data.length) {
        const count = Math.max(length, CHUNK_BYTES);
        const data = check(await run('tail -c +"$2" -- "$1" | head -c "$3"', [handle.path, String(offset + 1), String(count)])).stdout;
        handle.cache = { offset, data };
      }
      const window = handle.cache!;
      const slice = window.data.subarray(offset - window.offset, offset - window.offset + length);
      if (slice.length === 0) sftp.status(reqId, STATUS_CODE.EOF);
      else sftp.data(reqId, slice);
    }),
  );

  sftp.on('WRITE', (reqId, raw, offset, data) =>
    serve(reqId, () => {
      const handle = fileOf(raw);
      if (handle.failure) throw handle.failure;
      handle.cache = undefined;
      const pending = handle.pending;
      if (pending && pending.offset + pending.bytes === offset && pending.bytes < CHUNK_BYTES) {
        pending.chunks.push(Buffer.from(data));
        pending.bytes += data.length;
        sftp.status(reqId, STATUS_CODE.OK);
        return;
      }
      // Not contiguous, or the run is full: queue the current run and start a new one. The reply does not wait for
      // the flush (write-behind); a flush error is reported on the next write or the close.
      if (pending) void flush(handle).catch(() => {});
      handle.pending = { offset, chunks: [Buffer.from(data)], bytes: data.length };
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );

  sftp.on('CLOSE', (reqId, raw) =>
    serve(reqId, async () => {
      const handle = handleOf(raw);
      handles.delete(raw.toString());
      if (handle.type === 'file') {
        await flush(handle);
      }
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );

  sftp.on('OPENDIR', (reqId, path) =>
    serve(reqId, async () => {
      check(
        await run(
          '[ -d "$1" ] || { echo "No such file" >&2; exit 1; }; [ -r "$1" ] && [ -x "$1" ] || { echo "Permission denied" >&2; exit 1; }',
          [path],
        ),
      );
      sftp.handle(reqId, newHandle({ type: 'directory', path, done: false }));
    }),
  );
  sftp.on('READDIR', (reqId, raw) =>
    serve(reqId, async () => {
      const handle = handleOf(raw);
      if (handle.type !== 'directory') throw new SftpStatusError(STATUS_CODE.FAILURE, 'not a directory handle');
      if (handle.done) return sftp.status(reqId, STATUS_CODE.EOF);
      handle.done = true;
      const output = check(
        await run(`find "$1" -mindepth 1 -maxdepth 1 -printf '%P\\0%y\\0%m\\0%U\\0%G\\0%s\\0%A@\\0%T@\\0%u\\0%g\\0%n\\0'`, [handle.path]),
      ).stdout.toString('utf8');
      const fields = output.split('\0');
      const entries: FileEntry[] = [];
      for (let index = 0; index + 10 < fields.length; index += 11) {
        const [name, type, perms, uid, gid, size, atime, mtime, user, group, links] = fields.slice(index, index + 11) as [
          string,
          string,
          string,
          string,
          string,
          string,
          string,
          string,
          string,
          string,
          string,
        ];
        const attrs: Attributes = {
          mode: (TYPE_BITS[type] ?? 0o100000) | parseInt(perms, 8),
          uid: Number(uid),
          gid: Number(gid),
          size: Number(size),
          atime: Math.floor(Number(atime)),
          mtime: Math.floor(Number(mtime)),
        };
        entries.push({ filename: name, longname: longName(name, type, attrs, user, group, links), attrs });
      }
      if (entries.length === 0) return sftp.status(reqId, STATUS_CODE.EOF);
      sftp.name(reqId, entries);
    }),
  );

  const simple = (event: 'MKDIR' | 'RMDIR' | 'REMOVE', script: string) =>
    sftp.on(event, (reqId: number, path: string, attrs?: Attributes) =>
      serve(reqId, async () => {
        const mode = attrs && typeof attrs.mode === 'number' ? (attrs.mode & 0o7777).toString(8) : '755';
        check(await run(script, [path, mode]));
        sftp.status(reqId, STATUS_CODE.OK);
      }),
    );
  simple('MKDIR', 'mkdir -m "$2" -- "$1"');
  simple('RMDIR', 'rmdir -- "$1"');
  simple('REMOVE', '[ -d "$1" ] && [ ! -L "$1" ] && { echo "is a directory" >&2; exit 1; }; rm -f -- "$1"');
  sftp.on('RENAME', (reqId, from, to) =>
    serve(reqId, async () => {
      // SFTP v3 §6.5: renaming onto an existing file is an error.
      check(await run('[ -e "$2" ] && { echo "target exists" >&2; exit 1; }; mv -T -- "$1" "$2"', [from, to]));
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
  sftp.on('READLINK', (reqId, path) =>
    serve(reqId, async () => {
      const target = check(await run('readlink -- "$1"', [path]))
        .stdout.toString('utf8')
        .replace(/\n$/, '');
      sftp.name(reqId, [{ filename: target, longname: target, attrs: {} as Attributes }]);
    }),
  );
  sftp.on('SYMLINK', (reqId, linkPath, targetPath) =>
    serve(reqId, async () => {
      check(await run('ln -s -- "$2" "$1"', [linkPath, targetPath]));
      sftp.status(reqId, STATUS_CODE.OK);
    }),
  );
}

/** File type bits (stat(2) `S_IF*`) of find(1)'s `%y` letters. */
const TYPE_BITS: Record<string, number> = { f: 0o100000, d: 0o040000, l: 0o120000, p: 0o010000, s: 0o140000, c: 0o020000, b: 0o060000 };

/** An `ls -l` style line, which OpenSSH's sftp prints for `ls -l`. */
function longName(name: string, type: string, attrs: Attributes, user: string, group: string, links: string): string {
  const letter = type === 'f' ? '-' : type;
  const bits = ['r', 'w', 'x'];
  let permissions = '';
  for (let shift = 8; shift >= 0; shift--) permissions += attrs.mode & (1 << shift) ? bits[(8 - shift) % 3] : '-';
  const date = new Date(attrs.mtime * 1000).toISOString().slice(0, 16).replace('T', ' ');
  return `${letter}${permissions} ${links.padStart(3)} ${user.padEnd(8)} ${group.padEnd(8)} ${String(attrs.size).padStart(8)} ${date} ${name}`;
}
