// The SSH gateway's host key: an Ed25519 key generated once per runner and kept in the data dir, so that
// clients (and the known_hosts file `warren ssh-config` writes) see the same key across restarts.
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2, { type ParsedKey } from 'ssh2';

/** The host key as the gateway uses it. */
export interface HostKey {
  /** The private key in OpenSSH format (what ssh2's Server takes as `hostKeys`). */
  privateKey: string;
  /** The public key as one OpenSSH line, `ssh-ed25519 AAAA...` (published as Runner `status.info.sshHostKey`). */
  publicKey: string;
}

/** Path of the host key file under a data dir: `<dataDir>/ssh/host_key` (mode 0600). */
export function hostKeyPath(dataDir: string): string {
  return join(dataDir, 'ssh', 'host_key');
}

/**
 * Loads `<dataDir>/ssh/host_key`, generating an Ed25519 key (RFC 8709) there on first use. The file is written to
 * a temporary name with mode 0600 and renamed into place, so a crash never leaves half a key.
 * @throws {Error} when the file exists but is not a private key ssh2 can parse.
 */
export async function loadOrCreateHostKey(dataDir: string): Promise<HostKey> {
  const path = hostKeyPath(dataDir);
  let privateKey = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (privateKey === undefined) {
    const generated = generateEd25519KeyPair();
    await mkdir(join(dataDir, 'ssh'), { recursive: true, mode: 0o700 });
    const temporary = `${path}.${process.pid}.tmp`;
    await writeFile(temporary, generated.private, { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, path);
    privateKey = generated.private;
  }
  const key = parseOneKey(privateKey);
  if (key instanceof Error) throw new Error(`the SSH host key ${path} cannot be read: ${key.message}`, { cause: key });
  return { privateKey, publicKey: `${key.type} ${key.getPublicSSH().toString('base64')}` };
}

/**
 * Generates an Ed25519 key pair in OpenSSH format (`{ private, public }`, as ssh2's `utils.generateKeyPairSync`)
 * that ssh2 itself can parse back. ssh2 1.17 strips leading zero bytes off the raw public key, so about 1 pair in
 * 256 has a 31-byte (or shorter) key and neither half parses (mscdex/ssh2 issues #1390, #1513): such a host key
 * would stop the gateway for good. Pairs are drawn again until both halves parse.
 * @param comment the key comment (e.g. `user@host`).
 * @throws {Error} when 32 draws in a row fail (not seen: each fails with p ≈ 1/256).
 */
export function generateEd25519KeyPair(comment?: string): { private: string; public: string } {
  for (let attempt = 0; attempt < 32; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', comment === undefined ? {} : { comment });
    if (!(parseOneKey(pair.private) instanceof Error) && !(parseOneKey(pair.public) instanceof Error)) return pair;
  }
  throw new Error('could not generate an Ed25519 key pair that ssh2 can parse');
}

/**
 * Parses one key (private, or an OpenSSH public key line) with ssh2.
 * @returns the key, or an Error for text that holds none (ssh2 returns an array for files with several keys: the
 * first one is used).
 */
export function parseOneKey(text: string): ParsedKey | Error {
  const parsed: unknown = ssh2.utils.parseKey(text);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | Error | undefined) : (parsed as ParsedKey | Error);
  return key ?? new Error('no key found');
}
