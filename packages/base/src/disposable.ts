// A stack of cleanup actions, run in reverse order: used to undo half-done work on failure.

/** Collects cleanup callbacks and runs them last-in first-out; errors are collected, not thrown early. */
export class DisposableStack {
  private readonly actions: Array<() => unknown> = [];

  /** Registers `action` to run on `dispose()`. */
  defer(action: () => unknown): void {
    this.actions.push(action);
  }

  /**
   * Runs every registered action in reverse order, awaiting each.
   * @throws {AggregateError} when one or more actions failed (all actions still run).
   */
  async dispose(): Promise<void> {
    const errors: unknown[] = [];
    while (this.actions.length > 0) {
      const action = this.actions.pop()!;
      try {
        await action();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  }
}
