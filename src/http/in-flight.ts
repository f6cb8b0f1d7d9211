/**
 * Route handlers still running. A client that hangs up does not stop its handler, and the
 * HTTP server counts connections, not handlers: it can close while handlers are still on
 * their way to the database. Shutdown waits for them before closing what they use.
 */
export class HandlersInFlight {
  #running = 0;
  #waiters: Array<() => void> = [];

  get running(): number {
    return this.#running;
  }

  async track<T>(handler: () => Promise<T>): Promise<T> {
    this.#running++;
    try {
      return await handler();
    } finally {
      this.#running--;
      if (this.#running === 0) for (const wake of this.#waiters.splice(0)) wake();
    }
  }

  /** Resolves true once none are running, or false when `timeoutMs` passed first. */
  async settled(timeoutMs: number): Promise<boolean> {
    if (this.#running === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<true>((resolve) => this.#waiters.push(() => resolve(true)));
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const outcome = await Promise.race([idle, late]);
    clearTimeout(timer);
    return outcome;
  }
}
