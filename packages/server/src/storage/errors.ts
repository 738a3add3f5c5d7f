// Storage errors that are not in @warren/base because only the storage layer raises them.
import { WarrenError } from '@warren/base';

/**
 * A watch asked for history the store no longer has (its resourceVersion is older than the kept events), or
 * a watcher fell so far behind that its bounded buffer overflowed. Reason `Gone`, HTTP 410: the client must
 * list again and watch from the list's resourceVersion (Kubernetes API concepts, "Efficient detection of changes").
 */
export class GoneError extends WarrenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('Gone', 410, message, options);
  }
}
