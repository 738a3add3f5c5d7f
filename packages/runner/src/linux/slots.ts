// Host slots: a stable small integer per environment on a runner, from which its uid range, subnet
// and kernel object names are derived. Claims are persisted under `<dataDir>/slots/<k>`.
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError, type Logger, WarrenError, silentLogger } from '@warren/base';

/** Highest slot number. 10.88.0.0/16 holds 16384 /30 blocks; the last one (10.88.255.252/30) is kept spare. */
export const MAX_SLOT = 16382;
/** Number of host uids (and gids) given to each environment's user namespace. */
export const SLOT_ID_RANGE_SIZE = 65536;
/**
 * First host uid of slot 0: 2^30. Far above the ranges `useradd` puts in /etc/subuid (100000 + n*65536,
 * see subuid(5) and login.defs SUB_UID_MIN/MAX), and (2^30 + 16383*65536) stays below 2^32 - 1.
 */
export const SLOT_ID_BASE = 2 ** 30;
/** The subnet every environment's /30 is carved from. */
export const ENVIRONMENT_NETWORK_CIDR = '10.88.0.0/16';
/** Prefix of every kernel object Warren creates (netns, links, nft table, cgroups). */
export const KERNEL_OBJECT_PREFIX = 'warren';

/** Everything derived from a slot number; pure data, no I/O. */
export interface SlotInfo {
  slot: number;
  /** First host uid of the user namespace range `[uidBase, uidBase + 65536)`. */
  uidBase: number;
  /** First host gid; equal to `uidBase`. */
  gidBase: number;
  /** Size of the uid and gid range: 65536. */
  idCount: number;
  /** The /30 block, e.g. `10.88.0.4/30` for slot 1. */
  subnetCidr: string;
  /** Prefix length of the block: 30. */
  prefixLength: number;
  /** Host side address, `.1` of the block (e.g. `10.88.0.5`); the environment's default gateway. */
  hostAddress: string;
  /** Environment side address, `.2` of the block (e.g. `10.88.0.6`). */
  environmentAddress: string;
  /** Network namespace name, `warren-<k>`. */
  netnsName: string;
  /** Bind mount that pins the namespace, `/run/netns/warren-<k>` (ip-netns(8)); give it to the OCI runtime. */
  netnsPath: string;
  /** Host side veth name, `warren<k>h` (at most 11 characters, below IFNAMSIZ-1 = 15). */
  hostInterface: string;
  /** Environment side veth name, `warren<k>c`, inside the namespace. */
  environmentInterface: string;
}

/** All slots are taken. HTTP 507 (the runner has no room). */
export class SlotsExhaustedError extends WarrenError {
  constructor(readonly dataDir: string) {
    super('RunnerFull', 507, `all ${MAX_SLOT + 1} environment slots under ${dataDir} are taken`);
  }
}

/**
 * Throws unless `slot` is an integer in `[0, MAX_SLOT]`.
 * @throws {InvalidError} for anything else.
 */
export function assertSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot > MAX_SLOT) {
    throw new InvalidError(`slot must be an integer in [0, ${MAX_SLOT}], got ${slot}`, [{ field: 'slot', message: 'out of range' }]);
  }
}

/**
 * Derives uid range, /30 subnet and kernel object names from a slot number.
 * Block k of 10.88.0.0/16 is `10.88.(4k >> 8).(4k & 255)/30`; `.1` is the host side, `.2` the environment side.
 * @throws {InvalidError} when `slot` is out of range.
 */
export function slotInfo(slot: number): SlotInfo {
  assertSlot(slot);
  const base = slot * 4;
  const octets = (offset: number): string => `10.88.${(base + offset) >> 8}.${(base + offset) & 255}`;
  return {
    slot,
    uidBase: SLOT_ID_BASE + slot * SLOT_ID_RANGE_SIZE,
    gidBase: SLOT_ID_BASE + slot * SLOT_ID_RANGE_SIZE,
    idCount: SLOT_ID_RANGE_SIZE,
    subnetCidr: `${octets(0)}/30`,
    prefixLength: 30,
    hostAddress: octets(1),
    environmentAddress: octets(2),
    netnsName: `${KERNEL_OBJECT_PREFIX}-${slot}`,
    netnsPath: `/run/netns/${KERNEL_OBJECT_PREFIX}-${slot}`,
    hostInterface: `${KERNEL_OBJECT_PREFIX}${slot}h`,
    environmentInterface: `${KERNEL_OBJECT_PREFIX}${slot}c`,
  };
}

const ID_FILE = 'environment';

/**
 * Allocates and persists slots under `<dataDir>/slots/`.
 *
 * A claim is the directory `<dataDir>/slots/<k>` holding a file `environment` with the environment id.
 * The directory is first built complete under a temporary name and then moved into place with rename(2).
 * rename(2) of a directory onto an existing non-empty directory fails (ENOTEMPTY/EEXIST), and every claim
 * is non-empty, so the move is as exclusive as mkdir(2) while a crash can never leave a claim without its
 * id (this departs on purpose from a plain "mkdir then write" claim). Allocation inside one process is
 * serialised so concurrent requests for one environment get one slot; across processes the rename decides.
 */
export class SlotAllocator {
  readonly slotsDir: string;
  private readonly logger: Logger;
  private queue: Promise<unknown> = Promise.resolve();
  /** Last slot seen for an environment; only a hint, always confirmed by reading that claim's id file. */
  private readonly known = new Map<string, number>();

  constructor(
    readonly dataDir: string,
    options: { logger?: Logger } = {},
  ) {
    this.slotsDir = join(dataDir, 'slots');
    this.logger = (options.logger ?? silentLogger).child({ component: 'slots' });
  }

  /**
   * Returns the slot of `environmentId`, claiming the lowest free one if it has none (idempotent).
   * @throws {InvalidError} for an empty id or one with a line break.
   * @throws {SlotsExhaustedError} when all slots 0..MAX_SLOT are taken.
   */
  async allocate(environmentId: string): Promise<number> {
    if (environmentId === '' || /[\r\n\0]/.test(environmentId)) {
      throw new InvalidError('environment id must be a non-empty single line', [{ field: 'environmentId', message: 'invalid' }]);
    }
    return this.serialised(async () => {
      const hinted = await this.confirmed(environmentId);
      if (hinted !== undefined) return hinted;
      const claims = await this.list();
      for (const [slot, id] of claims) if (id === environmentId) return this.remember(environmentId, slot);
      await mkdir(this.slotsDir, { recursive: true });
      for (let slot = 0; slot <= MAX_SLOT; slot++) {
        if (claims.has(slot)) continue;
        if (await this.tryClaim(slot, environmentId)) {
          this.logger.info({ slot, environmentId }, 'slot allocated');
          return this.remember(environmentId, slot);
        }
      }
      throw new SlotsExhaustedError(this.dataDir);
    });
  }

  /** Returns the slot held by `environmentId`, or `undefined`. */
  async lookup(environmentId: string): Promise<number | undefined> {
    const hinted = await this.confirmed(environmentId);
    if (hinted !== undefined) return hinted;
    for (const [slot, id] of await this.list()) if (id === environmentId) return this.remember(environmentId, slot);
    this.known.delete(environmentId);
    return undefined;
  }

  /** The remembered slot of `environmentId` if its claim still names it (one file read instead of a listing). */
  private async confirmed(environmentId: string): Promise<number | undefined> {
    const slot = this.known.get(environmentId);
    if (slot === undefined) return undefined;
    const id = await readFile(join(this.slotsDir, String(slot), ID_FILE), 'utf8').catch(() => undefined);
    if (id === environmentId) return slot;
    this.known.delete(environmentId);
    return undefined;
  }

  private remember(environmentId: string, slot: number): number {
    this.known.set(environmentId, slot);
    return slot;
  }

  /**
   * Frees `slot` (idempotent; a free slot is a no-op). The caller must first remove the kernel objects
   * named after it. The claim is renamed away atomically before being deleted.
   * @throws {InvalidError} when `slot` is out of range.
   */
  async release(slot: number): Promise<void> {
    assertSlot(slot);
    return this.serialised(async () => {
      const doomed = join(this.slotsDir, `.released-${slot}-${process.pid}-${Date.now()}`);
      try {
        await rename(join(this.slotsDir, String(slot)), doomed);
      } catch (error) {
        if (isErrno(error, 'ENOENT')) return;
        throw error;
      }
      await rm(doomed, { recursive: true, force: true });
      this.logger.info({ slot }, 'slot released');
    });
  }

  /**
   * Lists the claimed slots (for adopting environments after a runner restart).
   * @returns slot → environment id, in ascending slot order. Entries that are not claims are ignored.
   */
  async list(): Promise<Map<number, string>> {
    let names: string[];
    try {
      names = await readdir(this.slotsDir);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return new Map();
      throw error;
    }
    const slots = names
      .filter((name) => /^(0|[1-9][0-9]*)$/.test(name))
      .map(Number)
      .filter((slot) => slot <= MAX_SLOT)
      .sort((a, b) => a - b);
    const ids = await Promise.all(
      slots.map((slot) =>
        readFile(join(this.slotsDir, String(slot), ID_FILE), 'utf8').catch((error: unknown) => {
          // Released between readdir and read; anything else is a real problem.
          if (!isErrno(error, 'ENOENT')) throw error;
          return undefined;
        }),
      ),
    );
    const result = new Map<number, string>();
    slots.forEach((slot, index) => {
      const id = ids[index];
      if (id !== undefined) result.set(slot, id);
    });
    return result;
  }

  private async tryClaim(slot: number, environmentId: string): Promise<boolean> {
    const staging = await mkdtemp(join(this.slotsDir, '.claim-'));
    try {
      await writeFile(join(staging, ID_FILE), environmentId, { flag: 'wx' });
      await rename(staging, join(this.slotsDir, String(slot)));
      return true;
    } catch (error) {
      if (isErrno(error, 'ENOTEMPTY') || isErrno(error, 'EEXIST')) return false;
      throw error;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
