// The SQL store's PGlite-only cache of lookups of the small, rarely written kinds (User, Token, Runner, EnvironmentClass).
import type { Kind } from '@warren/api';

/**
 * PGlite only: the answers of `get`, unfiltered `getByName` and `findTokenBySecretHash` for the small, rarely
 * written kinds that every API request reads to authenticate and validate (User, Token, Runner,
 * EnvironmentClass). Every query on PGlite costs about half a millisecond of the one thread everything runs on,
 * so these lookups were a third of the work of creating an environment.
 * Kept right by invalidation: the whole cache is dropped when the hub dispatches an event of one of these kinds
 * (this store's writes are dispatched before they are acknowledged), when another store on the same PGlite
 * instance notifies a commit, and on `setTokenSecretHash`. A read only fills the cache when no invalidation
 * happened while it ran, so a result read before a write is never kept after it. Not used on PostgreSQL, where
 * other processes write and their notifications arrive late.
 */
export class LookupCache {
  /** The kinds whose lookups are cached; an event of one of them invalidates the cache. */
  static readonly kinds: ReadonlySet<Kind> = new Set<Kind>(['User', 'Token', 'Runner', 'EnvironmentClass']);
  private readonly entries = new Map<string, unknown>();
  private epoch = 0;

  /** @returns a copy of the cached answer for `key`, or what `load` reads (cached unless invalidated meanwhile). */
  async read<T>(key: string, load: () => Promise<T>): Promise<T> {
    if (this.entries.has(key)) return structuredClone(this.entries.get(key) as T);
    const epoch = this.epoch;
    const value = await load();
    if (epoch === this.epoch) this.entries.set(key, structuredClone(value));
    return value;
  }

  /** Drops every entry; reads already running when this is called do not fill the cache. */
  invalidate(): void {
    this.epoch++;
    this.entries.clear();
  }
}
